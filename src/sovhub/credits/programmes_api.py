"""/hub/v1/programmes (public), applications and statements (an organization's API key).

The programme list is public: what a call offers and who may apply is what an applicant needs
before they have an account. Applying needs a key with the scope ``admin`` of the applying
organization (it commits the organization); reading its applications and statements, any of its
keys. The organization always comes from the key, never from the request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field

from ..accounts import ADMIN, require_scope
from ..api.deps import CurrentPrincipal, HubDep
from ..errors import PermissionDenied
from ..pipeline import Principal
from ..store.base import utcnow
from .amounts import parse_credits
from .applications import MAX_PURPOSE, application_view, list_applications, submit_application
from .notices import list_notices
from .programmes import programme_list
from .statement_page import reader_locale, statement_document
from .statements import statement, statement_csv
from .tables import CreditProgramme

__all__ = ["router"]

router = APIRouter(tags=["hub"])


class ApplicationRequest(BaseModel):
    purpose: str = Field(min_length=1, max_length=MAX_PURPOSE, description="Statement of purpose.")
    credits: str | float | int = Field(description="Credits asked for (up to six decimals).")


def _org(principal: Principal) -> int:
    if principal.org_id is None:
        raise PermissionDenied("this endpoint needs an API key of an organization")
    return principal.org_id


@router.get("/hub/v1/programmes")
async def get_programmes(hub: HubDep) -> dict[str, Any]:
    """Every programme, its call window and eligibility (budgets and grants are in the transparency report)."""
    return {"object": "list", "data": await anyio.to_thread.run_sync(programme_list, hub)}


@router.post("/hub/v1/programmes/{programme_id}/applications", status_code=201)
async def post_application(
    programme_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: ApplicationRequest, hub: HubDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    org_id = _org(principal)
    require_scope(principal, ADMIN)  # an application commits the organization
    amount = parse_credits(body.credits, allow_zero=False)
    row = await anyio.to_thread.run_sync(lambda: submit_application(
        hub, programme_id, org_id, purpose=body.purpose, amount=amount, actor=principal.label))
    with hub.db.session() as s:
        name = s.get(CreditProgramme, row.programme_id).name  # type: ignore[union-attr]
    return application_view(row, name, principal.org_name)


@router.get("/hub/v1/organization/applications")
async def get_applications(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    org_id = _org(principal)
    rows = await anyio.to_thread.run_sync(lambda: list_applications(hub, org_id=org_id))
    return {"object": "list", "data": rows}


@router.get("/hub/v1/organization/notices")
async def get_notices(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The organization's notices not yet dismissed: decisions on its applications, grants running low."""
    org_id = _org(principal)
    rows = await anyio.to_thread.run_sync(lambda: list_notices(hub, org_id))
    return {"object": "list", "data": rows}


@router.get("/hub/v1/organization/statements", response_model=None)
async def get_statement(
    request: Request, hub: HubDep, principal: CurrentPrincipal,
    month: str | None = Query(None, description="YYYY-MM (UTC); this month when omitted."),
    format: Literal["json", "csv", "html"] = Query("json", description="json, csv or html."),
    after: int = Query(0, ge=0, le=2**63 - 1, description="Lines after this seq (paging)."),
    limit: int = Query(10_000, ge=1, le=100_000, description="Lines at most."),
) -> dict[str, Any] | PlainTextResponse | HTMLResponse:
    org_id = _org(principal)
    month = month or utcnow().strftime("%Y-%m")
    data = await anyio.to_thread.run_sync(
        lambda: statement(hub, org_id, principal.org_name, month, after=after, limit=limit))
    if format == "csv":
        return PlainTextResponse(statement_csv(data), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": f'attachment; filename="statement-{principal.org_name}-{month}.csv"'})
    if format == "html":
        # A document for people: in the language the caller's Accept-Language asks for.
        return statement_document(reader_locale(hub, request.headers.get("accept-language")), data)
    return data
