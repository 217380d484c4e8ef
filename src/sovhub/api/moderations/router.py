"""POST /v1/moderations (API-key authenticated, like every /v1 route)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import InferencePrincipal
from .protocol import ModerationRequest
from .service import amoderate

router = APIRouter()

__all__ = ["create_moderation", "router"]


@router.post("/v1/moderations")
async def create_moderation(body: ModerationRequest, request: Request, principal: InferencePrincipal) -> JSONResponse:
    hub = request.app.state.hub
    response, headers = await amoderate(hub, body, principal, request.scope["state"]["request_id"])
    return JSONResponse(response.model_dump(), headers=headers)
