"""The moderation service: input checks, the hub's Moderator, OpenAI-shaped results. No FastAPI here."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from ...admission import admit, release, settle
from ...errors import InvalidRequest, UnsupportedParameter
from ...hub import Hub
from ...metering import Usage
from ...pipeline import Principal, SideCall
from ...safety.encoders import build_semantic_guard
from ...safety.guard_model import moderate_with_guard_model
from ...safety.lexicon import LexiconGuard
from ...safety.moderation import ModerationResult, Moderator
from ...safety.pipeline import check_input_size
from ...safety.semantic import SemanticGuard
from ...safety.taxonomy import OPENAI_CATEGORIES
from .protocol import CreateModerationResponse, Moderation, ModerationRequest

__all__ = ["MAX_INPUTS", "MODEL_ID", "amoderate", "get_moderator", "moderate", "parse_inputs", "to_wire"]

MODEL_ID = "sovhub-moderation-1"
MAX_INPUTS = 32

_build_lock = threading.Lock()


def get_moderator(hub: Hub, extra_lexicon_dirs: Sequence[Path] = ()) -> Moderator:
    """The hub's Moderator, built on first use and kept in ``hub.legacy["moderator"]``.

    Building loads (or, the first time for a given exemplar bank, trains and caches) the semantic
    classifier, so call it at start-up rather than on the first request.
    """
    moderator = hub.legacy.get("moderator")
    if moderator is None:
        with _build_lock:
            moderator = hub.legacy.get("moderator")
            if moderator is None:
                # Share the safety plugin's semantic guard when it exists: one model, one embedding cache.
                shared = (hub.legacy.get("safety.guards") or {}).get("semantic")
                semantic = shared if isinstance(shared, SemanticGuard) else build_semantic_guard(
                    hub.settings, hub.embedder
                )
                semantic.ensure_ready()
                dirs = [*extra_lexicon_dirs, *hub.legacy.get("lexicon_dirs", [])]
                moderator = Moderator(semantic, LexiconGuard(dirs))
                hub.legacy["moderator"] = moderator
    return moderator


def parse_inputs(value: Any) -> list[str]:
    """The texts of an OpenAI moderation ``input``; InvalidRequest (param "input") when malformed."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        if not value:
            raise InvalidRequest("'input' must not be an empty array.", param="input")
        if len(value) > MAX_INPUTS:
            raise InvalidRequest(f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed.",
                                 param="input")
        texts = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif isinstance(item, dict) and item.get("type") == "image_url":
                raise UnsupportedParameter("Image inputs are not supported; send text.", param=f"input[{i}]")
            else:
                raise InvalidRequest(f"'input[{i}]' must be a string.", param=f"input[{i}]")
    else:
        raise InvalidRequest("'input' must be a string or an array of strings.", param="input")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"'input[{i}]' is not valid Unicode (lone surrogate).", param="input") from None
    return texts


def to_wire(result: ModerationResult) -> Moderation:
    return Moderation(
        flagged=result.flagged,
        categories=result.categories,
        category_scores={k: round(v, 6) for k, v in result.category_scores.items()},
        category_applied_input_types={name: ["text"] for name in OPENAI_CATEGORIES},
        hazard_codes=result.hazard_codes,
    )


def moderate(hub: Hub, body: ModerationRequest) -> CreateModerationResponse:
    """Blocking, unmetered (in-process callers): run it in a worker thread (embedding is CPU-bound)."""
    texts = parse_inputs(body.input)
    check_input_size(hub, [len(t) for t in texts], "input")
    results = get_moderator(hub).moderate_batch(texts, body.lang)
    return CreateModerationResponse(
        id=f"modr-{uuid.uuid4().hex}", model=MODEL_ID, results=[to_wire(r) for r in results]
    )


async def amoderate(
    hub: Hub, body: ModerationRequest, principal: Principal, request_id: str
) -> tuple[CreateModerationResponse, dict[str, str]]:
    """Admitted and metered like chat; the guard model's verdicts added when one is configured.

    Off the event loop. The moderation's tokens are counted with the hub's tokenizer (e5), in one
    usage row; the guard model's calls (prompts and verdicts) in a second row, as the guard
    model's backend reported them or counted with its tokenizer (estimated when it has none).
    """
    texts = parse_inputs(body.input)
    check_input_size(hub, [len(t) for t in texts], "input")
    # e5 gives at most one token per character plus two markers: an upper bound to hold.
    admission = await admit(hub, principal, "moderations", MODEL_ID, reserve=sum(len(t) + 2 for t in texts))
    started = time.perf_counter()
    calls: list[SideCall] = []
    try:
        def work() -> tuple[list[ModerationResult], int]:
            found = get_moderator(hub).moderate_batch(texts, body.lang)
            return found, sum(hub.embedder.token_count(t) for t in texts)

        results, tokens = await anyio.to_thread.run_sync(work)
        results = await moderate_with_guard_model(hub, texts, results, body.lang, calls=calls)
    except BaseException:
        await release(hub, admission)
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    guard_prompt = sum(c.prompt_tokens for c in calls)
    guard_answer = sum(c.completion_tokens for c in calls)
    if hub.meter is not None:
        hub.meter.record(Usage(request_id=request_id, endpoint="moderations", model=MODEL_ID,
                               org_id=principal.org_id, key_id=principal.key_id, user_id=principal.user_id,
                               prompt_tokens=tokens, latency_ms=latency_ms))
        if calls:
            hub.meter.record(Usage(request_id=request_id, endpoint="moderations",
                                   model=str(hub.settings.safety.guard_model), org_id=principal.org_id,
                                   key_id=principal.key_id, user_id=principal.user_id,
                                   backend=calls[0].backend, prompt_tokens=guard_prompt,
                                   completion_tokens=guard_answer, latency_ms=latency_ms,
                                   estimated=any(c.estimated for c in calls)))
    await settle(hub, admission, tokens + guard_prompt + guard_answer)
    response = CreateModerationResponse(
        id=f"modr-{uuid.uuid4().hex}", model=MODEL_ID, results=[to_wire(r) for r in results]
    )
    return response, admission.headers
