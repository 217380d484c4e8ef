"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import CurrentPrincipal, HubDep
from .protocol import ListModelsResponse, Model
from .service import get_model, list_models

router = APIRouter()

__all__ = ["router"]


@router.get("/v1/models", response_model=ListModelsResponse)
async def models(hub: HubDep, principal: CurrentPrincipal) -> ListModelsResponse:
    return ListModelsResponse(data=list_models(hub, principal))


@router.get("/v1/models/{model_id:path}", response_model=Model)
async def model(model_id: str, hub: HubDep, principal: CurrentPrincipal) -> Model:
    return get_model(hub, principal, model_id)
