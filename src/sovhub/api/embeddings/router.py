"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import HubDep, InferencePrincipal, add_backend_time
from .protocol import CreateEmbeddingRequest
from .service import create_embeddings

router = APIRouter()

__all__ = ["router"]


@router.post("/v1/embeddings")
async def embeddings(
    body: CreateEmbeddingRequest, request: Request, hub: HubDep, principal: InferencePrincipal
) -> JSONResponse:
    response, model_s, headers = await create_embeddings(hub, body, principal, request.scope["state"]["request_id"])
    add_backend_time(request, model_s)
    return JSONResponse(response.model_dump(), headers=headers)
