"""/hub/v1/organization/*: verification status and request, usage, limits (API key of the organization).

None of these pass through admission: checking status or usage costs no tokens and no quota.
Requesting verification needs a key with the scope ``admin``; reading status, usage and limits
any key of the organization. Every handler reads the organization from the authenticated key
only, never from the request, so one organization's key cannot name another's.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from ..accounts import ADMIN, require_scope
from ..api.deps import CurrentPrincipal, HubDep
from ..errors import PermissionDenied
from ..pipeline import Principal
from .quotas import limits_for
from .state import AccessState
from .usage import usage_csv, usage_summary
from .verification import request_verification, verification_status

router = APIRouter(prefix="/hub/v1/organization", tags=["hub"])

__all__ = ["router"]


class VerificationRequest(BaseModel):
    country: str = Field(min_length=2, max_length=8, description="ISO 3166-1 alpha-2 code of the registry.")
    registry_number: str = Field(min_length=1, max_length=64, description="Number in the company registry.")
    legal_name: str = Field(min_length=1, max_length=300, description="Legal name as registered.")


def _org(principal: Principal) -> int:
    if principal.org_id is None:
        raise PermissionDenied("this endpoint needs an API key of an organization")
    return principal.org_id


def _public_base(request: Request) -> str:
    configured = request.app.state.hub.settings.access.public_url
    return (configured or str(request.base_url)).rstrip("/")


@router.get("/verification")
async def get_verification(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    org_id = _org(principal)
    status = await anyio.to_thread.run_sync(verification_status, hub, org_id)
    status["organization"] = principal.org_name
    return status


@router.post("/verification", status_code=201)
async def post_verification(
    body: VerificationRequest, request: Request, hub: HubDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    org_id = _org(principal)
    require_scope(principal, ADMIN)  # it names the company and hands out the representative's link
    row, token = await anyio.to_thread.run_sync(
        lambda: request_verification(
            hub, org_id, country=body.country, registry_number=body.registry_number,
            legal_name=body.legal_name, actor=principal.label,
        )
    )
    status = await anyio.to_thread.run_sync(verification_status, hub, org_id)
    status["organization"] = principal.org_name
    # Shown once: whoever holds the link can act as the representative's entry point.
    status["representative_url"] = f"{_public_base(request)}/auth/verify/{token}"
    return status


@router.get("/usage", response_model=None)
async def get_usage(
    hub: HubDep,
    principal: CurrentPrincipal,
    days: int = Query(30, ge=1, le=366, description="Days back from today (UTC)."),
    format: Literal["json", "csv"] = Query("json", description="json, or csv for a spreadsheet."),
) -> dict[str, Any] | PlainTextResponse:
    org_id = _org(principal)
    rows = await anyio.to_thread.run_sync(usage_summary, hub, org_id, days)
    if format == "csv":
        return PlainTextResponse(
            usage_csv(rows), media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="usage-{principal.org_name}-{days}d.csv"'},
        )
    return {"object": "list", "organization": principal.org_name, "days": days, "data": rows}


@router.get("/limits")
async def get_limits(
    hub: HubDep, principal: CurrentPrincipal, model: str | None = Query(None, description="Include this model's tier.")
) -> dict[str, Any]:
    """The limits that apply to this key (key, organization, and the model's tier when given)."""
    _org(principal)
    state = hub.services.get(AccessState)
    limits = limits_for(hub, principal, model or "")
    return {
        "object": "organization.limits",
        "organization": principal.org_name,
        "verified": state.org(principal.org_id).verified,
        "tier": state.tier(model) if model else None,
        "limits": [{"scope": lim.scope.split(":")[0] if ":tier:" not in lim.scope else "tier",
                    "field": lim.field, "value": lim.value} for lim in limits
                   if model or ":tier:" not in lim.scope],
    }
