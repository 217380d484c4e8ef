"""HTTP routes: a person's data rights (/hub/v1/me/...), an organization's (/hub/v1/organization/export and
/erase, an API key with the scope ``admin``: the organization is the key's, never named by the request), and the
public transparency report (JSON).

The report as a page, in the visitor's language, is the web app's (`sovhub.assistant.web.public`).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..accounts import ADMIN, require_scope
from ..api.deps import CurrentPrincipal, HubDep
from ..errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from ..hub import Hub
from ..pipeline import Principal
from . import rights, transparency

__all__ = ["router"]

router = APIRouter(tags=["sovereignty"])


def _person(request: Request) -> int:
    """The signed-in person (web session). API keys belong to organizations, not people."""
    from ..access.sessions import current_user

    user = current_user(request)
    if user is None:
        raise AuthenticationFailed("sign in to the hub to see or erase your data (a web session is needed; "
                                   "API keys belong to organizations)", code="not_signed_in")
    return user.user_id


async def _csrf(request: Request) -> None:
    from ..access.csrf import require_csrf

    await require_csrf(request)


@router.get("/hub/v1/me/export")
async def me_export(request: Request, hub: HubDep) -> dict[str, Any]:
    """Everything the hub holds about the signed-in person, as JSON."""
    user_id = _person(request)
    return await anyio.to_thread.run_sync(lambda: rights.export_user(hub, user_id, actor=f"user:{user_id}"))


@router.post("/hub/v1/me/erase", dependencies=[Depends(_csrf)])
async def me_erase(request: Request, response: Response, hub: HubDep) -> dict[str, Any]:
    """Erase the signed-in person: data key destroyed, rows deleted; the session ends."""
    from ..access.sessions import clear_session

    user_id = _person(request)
    summary = await anyio.to_thread.run_sync(lambda: rights.erase_user(hub, user_id, actor=f"user:{user_id}"))
    clear_session(request, response)
    return {"erased": True, "user_id": user_id, **summary}


def _org_admin(principal: Principal) -> int:
    if principal.org_id is None:
        raise PermissionDenied("this endpoint needs an API key of an organization")
    require_scope(principal, ADMIN)  # the whole organization's content, or its end
    return principal.org_id


@router.get("/hub/v1/organization/export")
async def org_export(hub: HubDep, principal: CurrentPrincipal) -> JSONResponse:
    """Everything the hub holds for the key's organization: files with their content, batches with their lines'
    requests and results, usage with energy and emissions."""
    org_id = _org_admin(principal)
    data = await anyio.to_thread.run_sync(lambda: rights.export_org(hub, org_id, actor=principal.label))
    return JSONResponse(data, headers={
        "content-disposition": f'attachment; filename="organization-{org_id}-export.json"'})


class OrganizationErasure(BaseModel):
    confirm: str = Field(max_length=200, description="The organization's name, typed out: erasure is final.")


@router.post("/hub/v1/organization/erase")
async def org_erase(body: OrganizationErasure, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """Erase the key's organization: data key destroyed, files, batches and keys deleted, usage anonymised."""
    org_id = _org_admin(principal)
    if body.confirm != principal.org_name:
        raise InvalidRequest(f"confirm must be the organization's name ({principal.org_name!r}): erasing it "
                             "cannot be undone", param="confirm", code="confirmation_mismatch")
    summary = await anyio.to_thread.run_sync(lambda: rights.erase_org(hub, org_id, actor=principal.label))
    return {"erased": True, "organization": principal.org_name, **summary}


def _report(hub: Hub) -> dict[str, Any]:
    return transparency.report(hub)


@router.get("/hub/v1/transparency")
async def transparency_json(hub: HubDep) -> dict[str, Any]:
    """The public transparency report (counts only)."""
    return await anyio.to_thread.run_sync(_report, hub)
