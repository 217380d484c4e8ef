"""Credits in the web app: an organization's members see its balance, grants, applications and notices,
and its admins apply to open programmes; a partner's staff see what their partner's money bought.

Who may do what is checked here against the session's person, never taken from the form: a
member of an organization reads its page and dismisses its notices, an admin of it (membership
role ``admin``) applies for it and removes its members (never its last admin); a partner's
dashboard and statement are shown only to the people who work for that partner. Everything else
is the credits area's (:mod:`sovhub.credits`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from markupsafe import Markup

from sovhub import linear_re

from ...access.csrf import verify_csrf
from ...credits.amounts import MICRO, format_credits, parse_credits
from ...credits.applications import list_applications, submit_application
from ...credits.control import Credits
from ...credits.dashboards import partner_dashboard, partner_statement, partner_statement_csv, partners_of
from ...credits.notices import dismiss_notice, list_notices
from ...credits.programmes import programme_list
from ...credits.statement_page import statement_document
from ...credits.statements import statement, statement_csv
from ...errors import SovhubError
from ...members import members_of, memberships, remove_member
from ...store.base import utcnow
from .admin_access import _back
from .auth import signed_in
from .render import Page, render
from .svg_bars import bar_chart

__all__ = ["credit_bars", "month_param", "partner_context", "router"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sovhub.assistant.web")

_MONTH = linear_re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_APPLY_CODES = {"call_not_open": "call_not_open", "call_closed": "call_closed", "grant_too_large": "grant_too_large",
                "application_pending": "application_pending", "kind_not_eligible": "kind_not_eligible",
                "organization_not_verified": "not_verified", "not_eligible": "not_eligible"}


def month_param(request: Request) -> str:
    raw = request.query_params.get("month", "")
    return raw if _MONTH.match(raw) else utcnow().strftime("%Y-%m")


def _forbidden(page: Page) -> Response:
    return render(page, "error.html", status=403, error="forbidden")


def _member_of(page: Page) -> dict[int, tuple[str, str]]:
    assert page.user is not None
    return {org_id: (name, role) for org_id, name, role in memberships(page.hub, page.user.id)}


async def _org_section(page: Page, org_id: int, name: str, role: str) -> dict[str, Any]:
    credits = page.hub.services.get(Credits)
    grants = credits.state.grants(org_id)
    balances = await credits.balances(grants)
    now = utcnow()
    rows, total = [], 0
    for g in grants:
        open_now = not g.closed and (g.expires_at is None or g.expires_at > now)
        left = balances.get(g.id, 0) if open_now else 0
        total += left
        rows.append({"id": g.id, "programme": g.programme, "granted": g.amount, "balance": left,
                     "expires_at": g.expires_at, "open": open_now, "low": open_now and credits.low.is_low(g.id)})

    def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[int, str, str]]]:
        members = members_of(page.hub, org_id) if role == "admin" else []
        return list_applications(page.hub, org_id=org_id), list_notices(page.hub, org_id), members

    applications, notices, members = await anyio.to_thread.run_sync(load)
    return {"id": org_id, "name": name, "admin": role == "admin", "grants": rows, "balance": total,
            "applications": applications, "notices": notices, "members": members}


@router.get("/credits")
async def credits_home(request: Request) -> Response:
    page = signed_in(request)
    orgs = await anyio.to_thread.run_sync(_member_of, page)
    sections = [await _org_section(page, org_id, name, role) for org_id, (name, role) in sorted(orgs.items())]
    programmes = [p for p in await anyio.to_thread.run_sync(programme_list, page.hub) if p["open"]]
    assert page.user is not None
    partners = await anyio.to_thread.run_sync(partners_of, page.hub, page.user.id)
    return render(page, "credits.html", orgs=sections, programmes=programmes, partners=partners,
                  credits_text=format_credits, month=utcnow().strftime("%Y-%m"),
                  done=request.query_params.get("done"), error=request.query_params.get("error"))


async def _person_form(request: Request) -> tuple[Page, Any]:
    """A signed-in person's form, CSRF-checked (refused with 403 otherwise)."""
    page = signed_in(request)
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    return page, form


@router.post("/credits/apply")
async def apply(request: Request) -> Response:
    page, form = await _person_form(request)
    assert page.user is not None
    org_raw, programme_raw = str(form.get("org") or ""), str(form.get("programme") or "")
    orgs = await anyio.to_thread.run_sync(_member_of, page)
    org_id = int(org_raw) if org_raw.isdigit() else -1
    if org_id not in orgs or orgs[org_id][1] != "admin":
        return _forbidden(page)  # only an admin of the organization commits it
    actor = f"user:{page.user.id}"

    def submit() -> None:
        amount = parse_credits(str(form.get("credits") or "0").strip() or "0", allow_zero=False)
        submit_application(page.hub, int(programme_raw) if programme_raw.isdigit() else -1, org_id,
                           purpose=str(form.get("purpose") or ""), amount=amount, actor=actor)

    try:
        await anyio.to_thread.run_sync(submit)
    except SovhubError as exc:
        log.info("application refused: %s", exc.message)
        code = _APPLY_CODES.get(exc.code or "") or {"purpose": "purpose", "credits": "credits",
                                                     "programme": "programme"}.get(exc.param or "", "failed")
        return _back("/credits", error=code)
    return _back("/credits", done="applied")


@router.post("/credits/notices/{notice_id}/dismiss")
async def dismiss(notice_id: int, request: Request) -> Response:
    page, form = await _person_form(request)
    assert page.user is not None
    org_raw = str(form.get("org") or "")
    orgs = await anyio.to_thread.run_sync(_member_of, page)
    org_id = int(org_raw) if org_raw.isdigit() else -1
    if org_id not in orgs:
        return _forbidden(page)
    actor = f"user:{page.user.id}"
    try:
        await anyio.to_thread.run_sync(lambda: dismiss_notice(page.hub, notice_id, org_id, actor=actor))
    except SovhubError:
        return _back("/credits", error="not_found")
    return _back("/credits", done="dismissed")


@router.post("/credits/{org_id}/members/{user_id}/remove")
async def member_remove(org_id: int, user_id: int, request: Request) -> Response:
    page, _form = await _person_form(request)
    assert page.user is not None
    orgs = await anyio.to_thread.run_sync(_member_of, page)
    if org_id not in orgs or orgs[org_id][1] != "admin":
        return _forbidden(page)  # only an admin of this organization removes its members
    actor = f"user:{page.user.id}"
    try:
        await anyio.to_thread.run_sync(lambda: remove_member(page.hub, org_id, user_id, actor=actor))
    except SovhubError as exc:
        log.info("member removal refused: %s", exc.message)
        return _back("/credits", error=exc.code if exc.code in ("last_admin", "not_member") else "failed")
    return _back("/credits", done="member_removed")


@router.get("/credits/{org_id}/statement", response_model=None)
async def org_statement(org_id: int, request: Request) -> Response:
    page = signed_in(request)
    orgs = await anyio.to_thread.run_sync(_member_of, page)
    if org_id not in orgs:
        return _forbidden(page)
    name = orgs[org_id][0]
    month = month_param(request)
    data = await anyio.to_thread.run_sync(lambda: statement(page.hub, org_id, name, month, limit=100_000))
    if request.query_params.get("format") == "html":
        return statement_document(page.ui, data)
    return PlainTextResponse(statement_csv(data), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="statement-{org_id}-{month}.csv"', "cache-control": "no-store"})


# --- partners ---------------------------------------------------------------------------------


def credit_bars(page: Page) -> Callable[[list[tuple[str, int]], str], Markup]:
    """A template's chart of (label, micro-credits) rows: SVG bars, the values printed as credits."""
    def chart(rows: list[tuple[str, int]], label: str) -> Markup:
        return bar_chart([(name, amount / MICRO) for name, amount in rows], label=label,
                         value_text=[format_credits(amount) for _, amount in rows], rtl=page.ui.direction == "rtl")

    return chart


def partner_context(page: Page, data: dict[str, Any], *, staff_view: bool = False) -> dict[str, Any]:
    """What partner.html needs: the dashboard's numbers and a chart per grouping (bars with a table)."""
    return {"partner": data, "chart": credit_bars(page), "credits_text": format_credits, "staff_view": staff_view,
            "month": data["month"]}


async def _partner_allowed(page: Page, partner_id: int) -> bool:
    assert page.user is not None
    mine = await anyio.to_thread.run_sync(partners_of, page.hub, page.user.id)
    return any(pid == partner_id for pid, _ in mine)


@router.get("/partner")
async def partner_home(request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    mine = await anyio.to_thread.run_sync(partners_of, page.hub, page.user.id)
    if len(mine) == 1:
        return RedirectResponse(f"/partner/{mine[0][0]}", status_code=303)
    if not mine:
        return _forbidden(page)
    return render(page, "credits.html", orgs=[], programmes=[], partners=mine, credits_text=format_credits,
                  month=utcnow().strftime("%Y-%m"), done=None, error=None)


@router.get("/partner/{partner_id}")
async def partner_page(partner_id: int, request: Request) -> Response:
    page = signed_in(request)
    if not await _partner_allowed(page, partner_id):
        return _forbidden(page)  # partner A's staff never read partner B's figures
    month = month_param(request)
    data = await anyio.to_thread.run_sync(lambda: partner_dashboard(page.hub, partner_id, month))
    return render(page, "partner.html", **partner_context(page, data))


@router.get("/partner/{partner_id}/statement", response_model=None)
async def partner_statement_download(partner_id: int, request: Request) -> Response:
    page = signed_in(request)
    if not (page.user is not None and page.user.is_staff) and not await _partner_allowed(page, partner_id):
        return _forbidden(page)
    month = month_param(request)
    data = await anyio.to_thread.run_sync(lambda: partner_statement(page.hub, partner_id, month, limit=100_000))
    return PlainTextResponse(partner_statement_csv(data), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="partner-{partner_id}-{month}.csv"',
        "cache-control": "no-store"})
