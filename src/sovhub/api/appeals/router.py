"""POST /hub/v1/appeals (file) and GET /hub/v1/appeals/{id} (status), for the person affected."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from ...safety.appeals import file_appeal, get_appeal
from ..deps import CurrentPrincipal, HubDep
from .protocol import AppealCreate, AppealObject

router = APIRouter()

__all__ = ["router"]


@router.post("/hub/v1/appeals", response_model=AppealObject, status_code=201)
async def create_appeal(body: AppealCreate, hub: HubDep, principal: CurrentPrincipal) -> AppealObject:
    view = await anyio.to_thread.run_sync(
        lambda: file_appeal(hub, principal, body.decision_id, body.reason, body.content,
                            body.consent_to_store_content)
    )
    return AppealObject.model_validate(view.as_dict())


@router.get("/hub/v1/appeals/{appeal_id}", response_model=AppealObject)
async def read_appeal(appeal_id: str, hub: HubDep, principal: CurrentPrincipal) -> AppealObject:
    view = await anyio.to_thread.run_sync(lambda: get_appeal(hub, principal, appeal_id))
    return AppealObject.model_validate(view.as_dict())
