"""The staff console for the two-person rule: request access to a person's content, decide, read.

This is the only way in: each step is taken by a signed-in staff session (CSRF-checked form
posts), and the domain (:mod:`sovhub.sovereignty.staff_access`) is handed that session's user
id, never a name from the form. So the requester and the approver are two authenticated
accounts, the requester cannot approve their own request, and the audit log names both as
``user:<id>``. Reading is a POST (it is recorded as a use, and no prefetch or link preview may
trigger it); the content page is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import Conflict, InvalidRequest, NotFound, PermissionDenied, SovhubError
from ...hub import Hub
from ...sovereignty.tables import AccessRequest
from .admin import staff_page
from .admin_access import _back, _staff_form
from .render import Page, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

PATH = "/admin/access"


@dataclass(frozen=True, slots=True)
class RequestView:
    """One access request as the console shows it to the signed-in staff member."""

    row: AccessRequest
    mine: bool
    can_decide: bool
    can_read: bool


def _views(hub: Hub, staff_id: int) -> list[RequestView]:
    from ...sovereignty.staff_access import list_requests

    now = datetime.now(UTC)
    out = []
    for row in reversed(list_requests(hub)):
        expires = row.expires_at
        mine = row.requested_by_id == staff_id
        out.append(RequestView(
            row, mine,
            can_decide=row.status == "requested" and not mine and row.user_id != staff_id,
            can_read=row.status == "approved" and expires is not None and expires > now
            and staff_id in (row.requested_by_id, row.decided_by_id)))
    return out


def _code(exc: SovhubError) -> str:
    """The page's message for a refusal (the domain's own message is English, for the logs)."""
    if isinstance(exc, InvalidRequest) and exc.param in ("reason", "hours"):
        return str(exc.param)
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, Conflict):
        return "decided"
    if isinstance(exc, PermissionDenied):
        return "refused"
    return "failed"


def _staff_id(page: Page) -> int:
    assert page.user is not None  # staff_page lets only signed-in staff through
    return page.user.id


@router.get(PATH)
async def access_page(request: Request) -> Response:
    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    views = await anyio.to_thread.run_sync(_views, page.hub, _staff_id(page))
    return render(page, "admin_content_access.html", requests=views, done=request.query_params.get("done"),
                  error=request.query_params.get("error"),
                  default_hours=page.hub.settings.sovereignty.access_grant_hours)


def _hours(raw: object) -> float | None:
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest(f"hours must be a number, got {text!r}", param="hours") from None


@router.post(PATH)
async def request_access(request: Request) -> Response:
    from ...sovereignty.rights import resolve_user
    from ...sovereignty.staff_access import request_access as record

    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, form = got
    legal_hold = str(form.get("legal_hold") or "").strip() or None

    def run() -> None:
        record(page.hub, resolve_user(page.hub, str(form.get("person") or "")), staff_id=_staff_id(page),
               reason=str(form.get("reason") or ""), hours=_hours(form.get("hours")), legal_hold=legal_hold)

    try:
        await anyio.to_thread.run_sync(run)
    except SovhubError as exc:
        return _back(PATH, error=_code(exc))
    return _back(PATH, done="requested")


async def _decide(request: Request, request_id: int, approve: bool) -> Response:
    from ...sovereignty import staff_access

    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, form = got
    note = str(form.get("note") or "").strip() or None
    decide = staff_access.approve if approve else staff_access.deny
    try:
        await anyio.to_thread.run_sync(lambda: decide(page.hub, request_id, staff_id=_staff_id(page), note=note))
    except SovhubError as exc:
        return _back(PATH, error=_code(exc))
    return _back(PATH, done="approved" if approve else "denied")


@router.post(PATH + "/{request_id}/approve")
async def approve(request_id: int, request: Request) -> Response:
    return await _decide(request, request_id, True)


@router.post(PATH + "/{request_id}/deny")
async def deny(request_id: int, request: Request) -> Response:
    return await _decide(request, request_id, False)


@router.post(PATH + "/{request_id}/read")
async def read(request_id: int, request: Request) -> Response:
    from ...sovereignty.staff_access import read_content

    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, _form = got
    try:
        items: list[dict[str, Any]] = await anyio.to_thread.run_sync(
            lambda: read_content(page.hub, request_id, staff_id=_staff_id(page)))
    except SovhubError as exc:
        return _back(PATH, error=_code(exc))
    response = render(page, "admin_content_read.html", request_id=request_id, items=items, path=PATH)
    response.headers["cache-control"] = "no-store"
    return response
