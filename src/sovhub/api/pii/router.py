"""POST /hub/v1/pii: find personal data in a text and return it redacted (thin)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import HubDep, InferencePrincipal
from .protocol import PiiRequest, PiiResponse
from .service import analyze

router = APIRouter()

__all__ = ["router"]


@router.post("/hub/v1/pii", response_model=PiiResponse)
async def analyze_pii(body: PiiRequest, request: Request, hub: HubDep, principal: InferencePrincipal) -> JSONResponse:
    response, headers = await analyze(hub, body, principal, request.scope["state"]["request_id"])
    return JSONResponse(response.model_dump(), headers=headers)
