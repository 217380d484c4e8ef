"""The staff console for the access area: verification decisions, organizations, API keys, quotas, tiers.

Every action calls the same domain function as its `sovhub` command (``staff_verify``,
``reject_verification``, ``revoke_verification``, ``set_org_limits``, ``grant_tier``, ``set_tier``,
``create_key``, ``revoke_key``, ``set_key_limits``), so a decision made here is validated, applied
and audited exactly as one made on the command line; the actor recorded is ``user:<id>`` of the staff
member.

Forms post and redirect back (post/redirect/get) with ``?done=CODE`` or ``?error=CODE``; the page
turns the code into a translated message. The one exception is a new key: its secret is shown on
the response page itself, once, and never put in a URL or stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ...access.csrf import verify_csrf
from ...access.ratelimit import FIELDS
from ...errors import Conflict, InvalidRequest, NotFound, SovhubError
from ...hub import Hub
from ...store.tables import Organization
from .admin import staff_page
from .render import Page, render

__all__ = ["org_path", "router"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sovhub.assistant.web")


def org_path(name: str) -> str:
    return f"/admin/orgs/{quote(name, safe='')}"


def _actor(page: Page) -> str:
    assert page.user is not None  # staff_page only lets signed-in staff through
    return f"user:{page.user.id}"


def _back(path: str, *, done: str | None = None, error: str | None = None, anchor: str = "") -> RedirectResponse:
    query = urlencode({k: v for k, v in (("done", done), ("error", error)) if v})
    return RedirectResponse(f"{path}?{query}{anchor}" if query else f"{path}{anchor}", status_code=303)


def _error_code(exc: SovhubError, by_class: Mapping[type[SovhubError], str]) -> str:
    """The page's message code for a refusal from the domain (its own message is English, for logs)."""
    if isinstance(exc, InvalidRequest):
        if exc.code == "limit_above_parent":
            return "above_parent"
        if exc.param == "reason":
            return "reason"
        if exc.param in FIELDS:
            return "quota"
        if exc.param in ("tier", "model", "name"):
            return {"tier": "tier", "model": "model", "name": "key_name"}[exc.param]
    for cls, code in by_class.items():
        if isinstance(exc, cls):
            return code
    return "failed"


async def _attempt(call: Callable[[], Any], by_class: Mapping[type[SovhubError], str] | None = None) -> str | None:
    """Run a domain call off the event loop; None when it succeeded, else the error code."""
    try:
        await anyio.to_thread.run_sync(call)
    except SovhubError as exc:
        log.info("admin action refused: %s", exc.message)
        return _error_code(exc, by_class or {})
    return None


def parse_limits(form: FormData) -> dict[str, int | None]:
    """Quota fields of a form: a whole number, or None for an empty field (no such limit).

    Only the form's text is parsed here; ranges and known fields are the domain's to check.
    """
    out: dict[str, int | None] = {}
    for field in FIELDS:
        raw = str(form.get(field) or "").strip()
        try:
            out[field] = int(raw) if raw else None
        except ValueError:
            raise InvalidRequest(f"limit {field} must be a whole number, got {raw!r}", param=field) from None
    return out


async def _staff_form(request: Request) -> tuple[Page, FormData] | Response:
    """The staff member's page and the form, CSRF-checked (refused with 403 otherwise)."""
    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    return page, form


def _org(hub: Hub, name: str) -> Organization:
    from ...accounts import get_org

    return get_org(hub, name)


async def _find_org(hub: Hub, name: str) -> Organization | None:
    try:
        return await anyio.to_thread.run_sync(_org, hub, name)
    except NotFound:
        return None


async def _org_form(request: Request, name: str) -> tuple[Page, FormData, Organization] | Response:
    """`_staff_form` for a form about one organization: also finds it (unknown: back to /admin)."""
    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, form = got
    org = await _find_org(page.hub, name)
    if org is None:
        return _back("/admin", error="org")
    return page, form, org


# --- the organization page ---


def _org_detail(hub: Hub, name: str) -> dict[str, Any]:
    from ...access.state import AccessState
    from ...access.verification import verification_status
    from ...accounts import list_keys

    org = _org(hub, name)
    facts = hub.services.get(AccessState).org(org.id)
    keys = [
        {"prefix": k.prefix, "name": k.name, "created_at": k.created_at, "revoked_at": k.revoked_at,
         "limits": dict(k.limits or {}), "scopes": list(k.scopes or [])}
        for k, _ in list_keys(hub, org.name)
    ]
    status = verification_status(hub, org.id)
    verified_at = datetime.fromisoformat(status["verified_at"]) if status.get("verified_at") else None
    return {"org": org, "verification": status, "verified_at": verified_at, "keys": keys,
            "limits": dict(facts.limits), "default_limits": dict(hub.settings.access.org_limits),
            "granted_tiers": sorted(facts.tiers)}


@router.get("/admin/orgs/{name}")
async def org_page(name: str, request: Request) -> Response:
    page = staff_page(request)
    if not isinstance(page, Page):
        return page
    try:
        data = await anyio.to_thread.run_sync(_org_detail, page.hub, name)
    except NotFound:
        return _back("/admin", error="org")
    return render(page, "admin_org.html", limit_fields=FIELDS, done=request.query_params.get("done"),
                  error=request.query_params.get("error"), **data)


# --- verification decisions ---


async def _decide(request: Request, name: str, action: str) -> Response:
    from ...access import verification

    got = await _org_form(request, name)
    if not isinstance(got, tuple):
        return got
    page, form, org = got
    # Decisions from the queue return to the queue; those from the organization page to that page.
    from_queue = form.get("from") == "queue"
    back, anchor = ("/admin", "#queue-title") if from_queue else (org_path(name), "#verification-title")
    reason = str(form.get("reason") or "")
    decide = {"verify": verification.staff_verify, "reject": verification.reject_verification,
              "revoke": verification.revoke_verification}[action]
    error = await _attempt(lambda: decide(page.hub, org.id, reason=reason, actor=_actor(page)),
                           {NotFound: "no_request", Conflict: "not_verified"})
    done = {"verify": "verified", "reject": "rejected", "revoke": "revoked"}[action]
    return _back(back, done=None if error else done, error=error, anchor=anchor)


@router.post("/admin/orgs/{name}/verify")
async def verify(name: str, request: Request) -> Response:
    return await _decide(request, name, "verify")


@router.post("/admin/orgs/{name}/reject")
async def reject(name: str, request: Request) -> Response:
    return await _decide(request, name, "reject")


@router.post("/admin/orgs/{name}/revoke-verification")
async def revoke(name: str, request: Request) -> Response:
    return await _decide(request, name, "revoke")


# --- quotas and custom tiers of an organization ---


@router.post("/admin/orgs/{name}/limits")
async def set_limits(name: str, request: Request) -> Response:
    from ...access.quotas import set_org_limits

    got = await _org_form(request, name)
    if not isinstance(got, tuple):
        return got
    page, form, org = got
    # An empty field clears that limit: the form shows every limit in force.
    error = await _attempt(lambda: set_org_limits(page.hub, org.id, parse_limits(form), actor=_actor(page)))
    return _back(org_path(name), done=None if error else "limits", error=error, anchor="#limits-title")


@router.post("/admin/orgs/{name}/tiers")
async def grant(name: str, request: Request) -> Response:
    from ...access.tiers import grant_tier

    got = await _org_form(request, name)
    if not isinstance(got, tuple):
        return got
    page, form, org = got
    granted = form.get("action") != "withdraw"
    tier = str(form.get("tier") or "")
    error = await _attempt(lambda: grant_tier(page.hub, org.id, tier, granted=granted, actor=_actor(page)))
    if error == "tier":
        error = "grant_tier"  # the grant form also refuses `open` and `verified`: one message says both
    done = "tier_granted" if granted else "tier_withdrawn"
    return _back(org_path(name), done=None if error else done, error=error, anchor="#tiers-title")


# --- API keys ---


@router.post("/admin/orgs/{name}/keys")
async def create(name: str, request: Request) -> Response:
    from ...accounts import create_key

    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, form = got
    if await _find_org(page.hub, name) is None:
        return _back("/admin", error="org")
    try:
        limits = {k: v for k, v in parse_limits(form).items() if v is not None}
        scope = str(form.get("scope") or "").strip()
        created = await anyio.to_thread.run_sync(
            lambda: create_key(page.hub, name, name=str(form.get("name") or ""), limits=limits,
                               scopes=[scope] if scope else None, actor=_actor(page))
        )
    except SovhubError as exc:
        log.info("admin key creation refused: %s", exc.message)
        return _back(org_path(name), error=_error_code(exc, {}), anchor="#new-key-title")
    # Shown on this response only: the hub keeps just the hash, so the secret cannot be shown again.
    # `path` is where the language switch returns: the organization's page, not this POST-only address.
    return render(page, "admin_key.html", org_name=created.org, prefix=created.prefix, secret=created.secret,
                  scopes=list(created.scopes),
                  key_name=str(form.get("name") or "").strip(), limits=limits, limit_fields=FIELDS,
                  path=org_path(created.org))


def _require_key_of(hub: Hub, org_name: str, prefix: str) -> None:
    """Refuse a key of another organization: a form for one organization never touches another's."""
    from ...accounts import list_keys

    if prefix not in {k.prefix for k, _ in list_keys(hub, org_name)}:
        raise NotFound(f"organization {org_name!r} has no API key {prefix!r}", param="key")


@router.post("/admin/orgs/{name}/keys/{prefix}/revoke")
async def revoke_key(name: str, prefix: str, request: Request) -> Response:
    from ...accounts import revoke_key as revoke

    got = await _org_form(request, name)
    if not isinstance(got, tuple):
        return got
    page, _form, org = got

    def run() -> None:
        _require_key_of(page.hub, org.name, prefix)
        revoke(page.hub, prefix, actor=_actor(page))

    error = await _attempt(run, {NotFound: "key"})
    return _back(org_path(name), done=None if error else "key_revoked", error=error, anchor="#keys-title")


@router.post("/admin/orgs/{name}/keys/{prefix}/limits")
async def set_key_limits(name: str, prefix: str, request: Request) -> Response:
    from ...access.quotas import set_key_limits as set_limits_of_key

    got = await _org_form(request, name)
    if not isinstance(got, tuple):
        return got
    page, form, org = got

    def run() -> None:
        limits = parse_limits(form)
        _require_key_of(page.hub, org.name, prefix)
        # An empty field clears that limit: the form shows every limit of the key.
        set_limits_of_key(page.hub, prefix, limits, actor=_actor(page))

    error = await _attempt(run, {NotFound: "key", Conflict: "revoked_key"})
    return _back(org_path(name), done=None if error else "key_limits", error=error, anchor="#keys-title")


# --- model tiers ---


@router.post("/admin/models/tier")
async def model_tier(request: Request) -> Response:
    from ...access.tiers import set_tier

    got = await _staff_form(request)
    if not isinstance(got, tuple):
        return got
    page, form = got
    model, tier = str(form.get("model") or ""), str(form.get("tier") or "")
    error = await _attempt(lambda: set_tier(page.hub, model, tier, actor=_actor(page)))
    return _back("/admin", done=None if error else "tier_set", error=error, anchor="#tiers-title")
