"""The fund office in the staff console: partners, programmes, grants, applications, kinds of organization.

Each action calls the same domain function as its `sovhub programmes` command (``create_programme``,
``grant_credits``, ``decide``, ``set_org_kind``, ``add_partner_member``, ``remove_partner_member``,
``add_member``, ``remove_member``), so it is
validated, applied to the ledger and audited exactly as on the command line, with the staff member
as actor ``user:<id>`` (and as the reviewer of a decision: the conflict-of-interest rule applies).
Forms post and redirect back with ``?done=CODE`` or ``?error=CODE`` (post/redirect/get).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from ...credits.amounts import format_credits, parse_credits, parse_share
from ...credits.applications import decide, list_applications
from ...credits.dashboards import (
    add_partner_member,
    fund_overview,
    grant_dashboard,
    partner_dashboard,
    programme_dashboard,
    remove_partner_member,
)
from ...credits.eligibility import ORG_KINDS, set_org_kind
from ...credits.programmes import ProgrammeRules, create_programme, grant_credits
from ...errors import Conflict, InvalidRequest, NotFound, PermissionDenied, SovhubError
from ...members import MEMBER_ROLES, add_member, remove_member
from .admin_access import _actor, _back, _staff_form
from .auth import staff_page
from .credits_pages import credit_bars, month_param, partner_context
from .render import render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sovhub.assistant.web")

_PATH = "/admin/credits"
# The refusals a form can meet, by the domain's error code (else by its parameter).
_CODES = {
    "conflict_of_interest": "conflict_of_interest", "already_decided": "already_decided",
    "programme_budget_exceeded": "budget_exceeded", "grant_too_large": "grant_too_large",
    "kind_not_eligible": "kind_not_eligible", "organization_not_verified": "not_eligible",
    "not_eligible": "not_eligible", "last_admin": "last_admin", "not_member": "not_member",
}
_PARAMS = {"credits": "credits", "budget": "credits", "max_grant": "credits", "partners": "partners",
           "partner": "partners", "reason": "reason", "name": "programme_name", "closes_at": "window",
           "expires": "expires", "kind": "kind", "email": "email", "org": "org", "programme": "programme"}


def _code(exc: SovhubError) -> str:
    if exc.code in _CODES:
        return _CODES[exc.code]
    if isinstance(exc, Conflict):
        return "exists"
    if exc.param in _PARAMS:
        return _PARAMS[exc.param]
    if isinstance(exc, PermissionDenied):
        return "not_eligible"
    return "failed"


async def _attempt(call: Any) -> str | None:
    try:
        await anyio.to_thread.run_sync(call)
    except SovhubError as exc:
        log.info("fund office action refused: %s", exc.message)
        return _code(exc)
    return None


def _text(form: FormData, name: str) -> str:
    return str(form.get(name) or "").strip()


def _date(form: FormData, name: str) -> datetime | None:
    raw = _text(form, name)
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"{name}: a date as YYYY-MM-DD, got {raw!r}", param="expires") from None


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in text.replace(",", " ").split() if w)


def _partners(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, share = line.rpartition("=")
        if not sep or not name.strip():
            raise InvalidRequest(f"partner line {line!r}: write NAME=SHARE", param="partners")
        out.append((name.strip(), parse_share(share, param="partners")))
    return out


@router.get(_PATH)
async def credits_page(request: Request) -> Response:
    page = staff_page(request)

    def load() -> dict[str, Any]:
        return {**fund_overview(page.hub), "queue": list_applications(page.hub, status="pending")}

    data = await anyio.to_thread.run_sync(load)
    return render(page, "admin_credits.html", kinds=ORG_KINDS, roles=MEMBER_ROLES, credits_text=format_credits,
                  chart=credit_bars(page), used_per_programme=[(p["name"], p["used"]) for p in data["programmes"]],
                  used_per_partner=[(p["name"], p["used"]) for p in data["partners"]],
                  done=request.query_params.get("done"), error=request.query_params.get("error"), **data)


@router.get(_PATH + "/programmes/{programme_id}")
async def programme_page(programme_id: int, request: Request) -> Response:
    page = staff_page(request)
    month = month_param(request)
    try:
        data = await anyio.to_thread.run_sync(lambda: programme_dashboard(page.hub, programme_id, month))
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    applications = await anyio.to_thread.run_sync(lambda: [
        a for a in list_applications(page.hub) if a["programme"] == data["name"]])
    return render(page, "admin_programme.html", programme=data, applications=applications,
                  credits_text=format_credits, chart=credit_bars(page))


@router.get(_PATH + "/grants/{grant_id}")
async def grant_page(grant_id: int, request: Request) -> Response:
    page = staff_page(request)
    try:
        data = await anyio.to_thread.run_sync(lambda: grant_dashboard(page.hub, grant_id))
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    return render(page, "admin_grant.html", grant=data, credits_text=format_credits)


@router.get(_PATH + "/partners/{partner_id}")
async def partner_page(partner_id: int, request: Request) -> Response:
    """Staff read any partner's dashboard (its own staff read theirs at /partner/{id})."""
    page = staff_page(request)
    month = month_param(request)
    try:
        data = await anyio.to_thread.run_sync(lambda: partner_dashboard(page.hub, partner_id, month))
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    return render(page, "partner.html", **partner_context(page, data, staff_view=True))


@router.post(_PATH + "/programmes")
async def programme_create(request: Request) -> Response:
    page, form = await _staff_form(request)

    def create() -> None:
        max_grant = _text(form, "max_grant")
        validity = _text(form, "validity_days")
        if validity and not validity.isdigit():
            raise InvalidRequest("grant validity is a whole number of days", param="credits")
        rules = ProgrammeRules(
            description=_text(form, "description") or None, opens_at=_date(form, "opens"),
            closes_at=_date(form, "closes"), require_verified=form.get("require_verified") == "yes",
            jurisdictions=_words(_text(form, "jurisdictions").upper()),
            org_kinds=tuple(str(k) for k in form.getlist("kinds")),
            max_grant=parse_credits(max_grant, param="max_grant", allow_zero=False) if max_grant else None,
            grant_validity_days=int(validity) if validity else None, models=_words(_text(form, "models")),
        )
        create_programme(page.hub, _text(form, "name"), parse_credits(_text(form, "budget") or "0", param="budget"),
                         _partners(_text(form, "partners")), rules, actor=_actor(page))

    error = await _attempt(create)
    return _back(_PATH, done=None if error else "programme_created", error=error)


@router.post(_PATH + "/grants")
async def grant_create(request: Request) -> Response:
    page, form = await _staff_form(request)

    def grant() -> None:
        programme = _text(form, "programme")
        grant_credits(page.hub, int(programme) if programme.isdigit() else programme, _text(form, "org"),
                      parse_credits(_text(form, "credits") or "0", allow_zero=False), reason=_text(form, "reason"),
                      actor=_actor(page), expires_at=_date(form, "expires"))

    error = await _attempt(grant)
    return _back(_PATH, done=None if error else "grant_created", error=error, anchor="#grants-title")


@router.post(_PATH + "/applications/{application_id}/decide")
async def application_decide(application_id: int, request: Request) -> Response:
    page, form = await _staff_form(request)
    assert page.user is not None
    reviewer = page.user.id
    choice = _text(form, "decision")

    def run() -> None:
        if choice not in ("approve", "reject"):
            raise InvalidRequest("decide approve or reject", param="reason")
        amount = _text(form, "credits")
        decide(page.hub, application_id, "approved" if choice == "approve" else "rejected",
               reason=_text(form, "reason"), reviewer_id=reviewer,
               amount=parse_credits(amount, allow_zero=False) if amount and choice == "approve" else None)

    error = await _attempt(run)
    return _back(_PATH, done=None if error else ("approved" if choice == "approve" else "rejected"), error=error,
                 anchor="#queue-title")


@router.post(_PATH + "/kinds")
async def org_kind(request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _attempt(lambda: set_org_kind(page.hub, _text(form, "org"), _text(form, "kind") or None,
                                                actor=_actor(page)))
    return _back(_PATH, done=None if error else "kind_set", error=error, anchor="#orgs-title")


@router.post(_PATH + "/members")
async def org_member(request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _attempt(lambda: add_member(page.hub, _text(form, "org"), _text(form, "email"),
                                              _text(form, "role") or "member", actor=_actor(page)))
    return _back(_PATH, done=None if error else "member_set", error=error, anchor="#orgs-title")


@router.post(_PATH + "/partners/{partner_id}/members")
async def partner_member(partner_id: int, request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _attempt(lambda: add_partner_member(page.hub, partner_id, _text(form, "email"),
                                                      actor=_actor(page)))
    return _back(_PATH, done=None if error else "partner_member_added", error=error, anchor="#partners-title")


@router.post(_PATH + "/members/remove")
async def org_member_remove(request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _attempt(lambda: remove_member(page.hub, _text(form, "org"), _text(form, "email"),
                                                 actor=_actor(page)))
    return _back(_PATH, done=None if error else "member_removed", error=error, anchor="#orgs-title")


@router.post(_PATH + "/partners/{partner_id}/members/remove")
async def partner_member_remove(partner_id: int, request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _attempt(lambda: remove_partner_member(page.hub, partner_id, _text(form, "email"),
                                                         actor=_actor(page)))
    return _back(_PATH, done=None if error else "partner_member_removed", error=error, anchor="#partners-title")
