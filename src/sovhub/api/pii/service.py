"""The PII service: admitted and metered like chat, analysed off the event loop. No FastAPI here."""

from __future__ import annotations

import time

import anyio

from ...admission import admit, release, settle
from ...hub import Hub
from ...metering import Meter, Usage
from ...pipeline import Principal
from ...safety.pii import Vault
from ...safety.pipeline import SafetyRuntime, check_input_size
from .protocol import PiiEntityOut, PiiRequest, PiiResponse

__all__ = ["MODEL_ID", "analyze"]

# The name usage rows and quotas give the analyzer (it is no model a backend serves).
MODEL_ID = "sovhub-pii-1"


async def analyze(
    hub: Hub, body: PiiRequest, principal: Principal, request_id: str
) -> tuple[PiiResponse, dict[str, str]]:
    check_input_size(hub, [len(body.input)], "input")
    runtime = hub.services.get(SafetyRuntime)
    mode = body.mode or runtime.policy.pii.mode
    # e5's tokenizer gives at most one token per character plus two markers: an upper bound to hold.
    admission = await admit(hub, principal, "pii", MODEL_ID, reserve=len(body.input) + 2, request_id=request_id)
    started = time.perf_counter()

    def work() -> tuple[PiiResponse, int]:
        entities = runtime.analyzer.analyze(body.input)
        # A pseudonym map made here is returned to nobody and dropped with the request.
        redacted = runtime.redactor.redact(body.input, entities, mode, Vault())
        response = PiiResponse(
            mode=mode,
            entities=[PiiEntityOut(type=e.type, start=e.start, end=e.end, score=round(e.score, 3)) for e in entities],
            redacted=redacted,
        )
        return response, hub.embedder.token_count(body.input)

    try:
        # Always in a worker thread: a long input is CPU work the event loop must not wait for.
        response, tokens = await anyio.to_thread.run_sync(work)
    except BaseException:
        await release(hub, admission)
        raise
    meter = hub.services.get(Meter)
    meter.record(Usage(request_id=request_id, endpoint="pii", model=MODEL_ID, org_id=principal.org_id,
                       key_id=principal.key_id, user_id=principal.user_id, prompt_tokens=tokens,
                       latency_ms=(time.perf_counter() - started) * 1000))
    await settle(hub, admission, tokens)
    return response, admission.headers
