"""/hub/v1/keys: an organization's own API keys (list, create, revoke), with an API key of that organization."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..accounts import create_key, list_keys, revoke_key
from ..errors import NotFound
from .deps import CurrentPrincipal, HubDep

router = APIRouter(prefix="/hub/v1/keys", tags=["hub"])

__all__ = ["router"]


class KeyCreate(BaseModel):
    name: str | None = Field(None, max_length=120)


def _public(key: Any) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "name": key.name,
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "limits": key.limits,
    }


@router.get("")
async def keys(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    rows = await anyio.to_thread.run_sync(list_keys, hub, principal.org_name)
    return {"object": "list", "data": [_public(k) for k, _ in rows]}


@router.post("", status_code=201)
async def new_key(body: KeyCreate, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    assert principal.org_name is not None
    created = await anyio.to_thread.run_sync(
        lambda: create_key(hub, principal.org_name or "", name=body.name, actor=principal.label)
    )
    return {"prefix": created.prefix, "secret": created.secret, "organization": created.org}


@router.delete("/{prefix}")
async def delete_key(prefix: str, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    rows = await anyio.to_thread.run_sync(list_keys, hub, principal.org_name)
    if not any(k.prefix == prefix for k, _ in rows):
        raise NotFound(f"no API key with prefix {prefix!r} in your organization")
    await anyio.to_thread.run_sync(lambda: revoke_key(hub, prefix, actor=principal.label))
    return {"prefix": prefix, "revoked": True}
