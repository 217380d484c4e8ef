"""POST /hub/v1/pii: find personal data in a text and return it redacted (thin)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from ...safety.pii import Vault
from ...safety.pipeline import get_runtime
from ..deps import CurrentPrincipal, HubDep
from .protocol import PiiEntityOut, PiiRequest, PiiResponse

router = APIRouter()

__all__ = ["router"]


@router.post("/hub/v1/pii", response_model=PiiResponse)
async def analyze_pii(body: PiiRequest, hub: HubDep, principal: CurrentPrincipal) -> PiiResponse:
    runtime = get_runtime(hub)
    mode = body.mode or runtime.policy.pii.mode

    def work() -> PiiResponse:
        entities = runtime.analyzer.analyze(body.input)
        # A pseudonym map made here is returned to nobody and dropped with the request.
        redacted = runtime.redactor.redact(body.input, entities, mode, Vault())
        return PiiResponse(
            mode=mode,
            entities=[PiiEntityOut(type=e.type, start=e.start, end=e.end, score=round(e.score, 3)) for e in entities],
            redacted=redacted,
        )

    # Short texts are analysed inline (sub-millisecond); long ones off the event loop.
    if len(body.input) < 2000:
        return work()
    return await anyio.to_thread.run_sync(work)
