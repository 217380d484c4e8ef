"""The moderation service: input checks, the hub's Moderator, OpenAI-shaped results. No FastAPI here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import anyio

from ...admission import admit, release, settle
from ...errors import InvalidRequest, UnsupportedParameter
from ...hub import Hub
from ...metering import Meter, Usage
from ...pipeline import Principal, SideCall
from ...safety.guard_model import GuardModelGuard, backend_complete, run_guard_model
from ...safety.guards import GuardFinding
from ...safety.interceptor import SafetyRuntime, check_input_size
from ...safety.moderation import ModerationResult, Moderator, add_findings
from ...safety.taxonomy import OPENAI_CATEGORIES
from .protocol import CreateModerationResponse, Moderation, ModerationRequest

__all__ = ["MAX_INPUTS", "MODEL_ID", "amoderate", "moderate", "parse_inputs", "to_wire"]

MODEL_ID = "sovhub-moderation-1"
MAX_INPUTS = 32

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
    results = hub.services.get(Moderator).moderate_batch(texts, body.lang)
    return CreateModerationResponse(
        id=f"modr-{uuid.uuid4().hex}", model=MODEL_ID, results=[to_wire(r) for r in results]
    )


async def amoderate(
    hub: Hub, body: ModerationRequest, principal: Principal, request_id: str, *, batch_id: str | None = None
) -> tuple[CreateModerationResponse, dict[str, str]]:
    """Admitted and metered like chat; the guard model's verdicts added when one is configured.

    Off the event loop. The moderation's tokens are counted with the hub's tokenizer (e5), in one
    usage row; the guard model's calls (prompts and verdicts) in a second row, as the guard
    model's backend reported them or counted with its tokenizer (estimated when it has none).
    """
    texts = parse_inputs(body.input)
    check_input_size(hub, [len(t) for t in texts], "input")
    # e5 gives at most one token per character plus two markers: an upper bound to hold.
    admission = await admit(hub, principal, "moderations", MODEL_ID, reserve=sum(len(t) + 2 for t in texts),
                            request_id=request_id, batch_id=batch_id)
    started = time.perf_counter()
    calls: list[SideCall] = []
    try:
        def work() -> tuple[list[ModerationResult], int]:
            found = hub.services.get(Moderator).moderate_batch(texts, body.lang)
            return found, sum(hub.embedder.token_count(t) for t in texts)

        results, tokens = await anyio.to_thread.run_sync(work)
        results = await moderate_with_guard_model(hub, texts, results, body.lang, calls=calls)
    except BaseException:
        await release(hub, admission)
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    guard_prompt = sum(c.prompt_tokens for c in calls)
    guard_answer = sum(c.completion_tokens for c in calls)
    meter = hub.services.get(Meter)
    meter.record(Usage(request_id=request_id, endpoint="moderations", model=MODEL_ID,
                       org_id=principal.org_id, key_id=principal.key_id, user_id=principal.user_id,
                       prompt_tokens=tokens, latency_ms=latency_ms, batch_id=batch_id))
    if calls:
        meter.record(Usage(request_id=request_id, endpoint="moderations",
                           model=str(hub.settings.safety.guard_model), org_id=principal.org_id,
                           key_id=principal.key_id, user_id=principal.user_id,
                           backend=calls[0].backend, prompt_tokens=guard_prompt,
                           completion_tokens=guard_answer, latency_ms=latency_ms,
                           estimated=any(c.estimated for c in calls), batch_id=batch_id))
    await settle(hub, admission, tokens + guard_prompt + guard_answer)
    response = CreateModerationResponse(
        id=f"modr-{uuid.uuid4().hex}", model=MODEL_ID, results=[to_wire(r) for r in results]
    )
    return response, admission.headers


async def moderate_with_guard_model(
    hub: Hub, texts: Sequence[str], results: list[ModerationResult], lang: str | None,
    calls: list[SideCall] | None = None,
) -> list[ModerationResult]:
    """``/v1/moderations`` results with the guard model's verdicts added (unchanged when it is off).

    Identifiers are masked first, as in the chat pipeline; the inputs are judged concurrently.
    """
    settings = hub.settings.safety
    if not settings.guard_model:
        return results
    runtime = hub.services.get(SafetyRuntime)
    guard = GuardModelGuard(backend_complete(hub, settings.guard_model, None, calls))
    # PII analysis of long inputs is CPU work: off the event loop.
    masked = await anyio.to_thread.run_sync(
        lambda: [runtime.redactor.redact(t, runtime.analyzer.analyze(t), "mask") for t in texts]
    )

    async def judge(text: str) -> list[GuardFinding]:
        if not text.strip():
            return []
        return await run_guard_model(guard, text, lang, failure=settings.guard_model_failure,
                                     timeout_s=settings.guard_model_timeout_s)

    # gather, not a task group: the first failure is raised as itself, not inside an ExceptionGroup.
    found = await asyncio.gather(*(judge(t) for t in masked))
    return [add_findings(r, f) if f else r for r, f in zip(results, found, strict=True)]
