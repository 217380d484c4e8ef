"""/hub/v1/keys: an organization's own API keys (list, create, revoke), with an admin-scoped key of it.

A key without the scope ``admin`` gets 403 ``insufficient_scope`` on every route here. A key made
here gets at most the calling key's scopes, limits and expiry, and is revoked with it
(:mod:`sovhub.accounts`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..accounts import ADMIN, create_key, list_keys, require_scope, revoke_key
from ..errors import NotFound
from .deps import CurrentPrincipal, HubDep

router = APIRouter(prefix="/hub/v1/keys", tags=["hub"])

__all__ = ["router"]


class KeyLimits(BaseModel):
    rpm: int | None = Field(None, ge=0, description="Requests per minute.")
    tpm: int | None = Field(None, ge=0, description="Tokens per minute.")
    rpd: int | None = Field(None, ge=0, description="Requests per day.")
    tpd: int | None = Field(None, ge=0, description="Tokens per day.")
    budget_day: int | None = Field(None, ge=0, description="Token budget per UTC day.")
    budget_week: int | None = Field(None, ge=0, description="Token budget per ISO week.")
    budget_month: int | None = Field(None, ge=0, description="Token budget per month.")


class KeyCreate(BaseModel):
    name: str | None = Field(None, max_length=120)
    scopes: list[Literal["inference", "admin"]] | None = Field(
        None, max_length=2, description="Default ['inference']; at most the calling key's scopes."
    )
    limits: KeyLimits | None = Field(
        None, description="At most the calling key's; a limit it has and this leaves out is inherited."
    )
    expires_at: datetime | None = Field(
        None, description="ISO 8601 with a time zone; no later than the calling key's expiry (inherited if unset)."
    )


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _public(key: Any) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "name": key.name,
        "scopes": list(key.scopes or []),
        "created_at": _iso(key.created_at),
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "limits": key.limits,
    }


@router.get("")
async def keys(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    require_scope(principal, ADMIN)
    rows = await anyio.to_thread.run_sync(list_keys, hub, principal.org_name)
    return {"object": "list", "data": [_public(k) for k, _ in rows]}


@router.post("", status_code=201)
async def new_key(body: KeyCreate, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    require_scope(principal, ADMIN)
    limits = body.limits.model_dump(exclude_none=True) if body.limits else {}
    created = await anyio.to_thread.run_sync(
        lambda: create_key(
            hub, principal.org_name or "", name=body.name, limits=limits, scopes=body.scopes,
            expires_at=body.expires_at, creator=principal, actor=principal.label,
        )
    )
    return {
        "prefix": created.prefix, "secret": created.secret, "organization": created.org,
        "scopes": list(created.scopes), "limits": dict(created.limits or {}), "expires_at": _iso(created.expires_at),
    }


@router.delete("/{prefix}")
async def delete_key(prefix: str, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    require_scope(principal, ADMIN)
    rows = await anyio.to_thread.run_sync(list_keys, hub, principal.org_name)
    if not any(k.prefix == prefix for k, _ in rows):
        raise NotFound(f"no API key with prefix {prefix!r} in your organization")
    await anyio.to_thread.run_sync(lambda: revoke_key(hub, prefix, actor=principal.label))
    return {"prefix": prefix, "revoked": True}
