"""The operator console: request log, usage charts, backends, people and organizations.

Each action calls the domain function behind its `sovhub` command (``add_backend``,
``edit_backend``, ``remove_backend``, ``create_user``, ``set_staff``, ``reset_password``,
``create_org``), so it is validated and audited the same way, with the staff member as actor
``user:<id>``; backend changes are served at once (:func:`sovhub.backends.live.apply_catalog`),
no restart. The request log and the charts read
metadata only (:mod:`sovhub.access.request_log`); a request's content is reached only through the
two-person rule at ``/admin/access``.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from ...access.request_log import UsageTotal, request_log, usage_totals
from ...accounts import create_org
from ...backends.catalog import add_backend, backend_configs, edit_backend, remove_backend
from ...backends.live import apply_catalog
from ...backends.registry import BackendRegistry
from ...errors import Conflict, InvalidRequest, NotFound, SovhubError
from ...jurisdictions import validate_jurisdiction
from ..people import create_user, list_people, reset_password, set_staff
from .admin_access import _actor, _back, _staff_form
from .auth import staff_page
from .render import Page, render
from .svg_bars import bar_chart

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
log = logging.getLogger("sovhub.assistant.web")

_DAYS = (1, 7, 30, 90)


def _code(exc: SovhubError) -> str:
    if isinstance(exc, Conflict):
        return "exists"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, InvalidRequest) and exc.param in ("email", "password", "jurisdiction", "url", "gguf", "name",
                                                         "organization"):
        return str(exc.param)
    return "failed"


async def _run(call: Any) -> str | None:
    try:
        await anyio.to_thread.run_sync(call)
    except SovhubError as exc:
        log.info("console action refused: %s", exc.message)
        return _code(exc)
    return None


# --- request log ---


@router.get("/admin/requests")
async def requests_page(request: Request) -> Response:
    page = staff_page(request)
    q = request.query_params
    before = q.get("before", "")
    organization, model = q.get("org", "").strip()[:120], q.get("model", "").strip()[:200]
    failed = q.get("failed") == "1"
    rows = await anyio.to_thread.run_sync(lambda: request_log(
        page.hub, organization=organization or None, model=model or None, failed_only=failed,
        before_id=int(before) if before.isdigit() else None, limit=100))
    return render(page, "admin_requests.html", rows=rows, org_filter=organization, model_filter=model,
                  failed=failed, next_before=rows[-1].id if len(rows) == 100 else None)


# --- usage charts ---


@router.get("/admin/usage")
async def usage_page(request: Request) -> Response:
    page = staff_page(request)
    raw = request.query_params.get("days", "30")
    days = int(raw) if raw.isdigit() and int(raw) in _DAYS else 30

    def totals() -> dict[str, list[UsageTotal]]:
        return {by: usage_totals(page.hub, by, days) for by in ("org", "key", "model")}

    def chart(rows: list[UsageTotal], label: str) -> Markup:
        # The label comes from the template, translated; the values as the page formats numbers.
        return bar_chart([(t.label or "—", float(t.total_tokens)) for t in rows], label=label,
                         value_text=[page.ui.format_number(t.total_tokens) for t in rows],
                         rtl=page.ui.direction == "rtl")

    groups = await anyio.to_thread.run_sync(totals)
    return render(page, "admin_usage.html", groups=groups, chart=chart, days=days, day_choices=_DAYS)


# --- backends ---


@router.get("/admin/backends")
async def backends_page(request: Request) -> Response:
    page = staff_page(request)
    configs = await anyio.to_thread.run_sync(backend_configs, page.hub)
    registry = page.hub.services.get(BackendRegistry)
    running = {b.name for b in registry.backends} if registry.running else set()
    return render(page, "admin_backends.html", configs=configs, running=running,
                  done=request.query_params.get("done"), error=request.query_params.get("error"))


@router.post("/admin/backends")
async def backend_add(request: Request) -> Response:
    page, form = await _staff_form(request)

    def field(name: str) -> str | None:
        return str(form.get(name) or "").strip() or None

    def add() -> None:
        jurisdiction = field("jurisdiction")
        models = [m.strip() for m in (field("models") or "").replace(",", " ").split() if m.strip()]
        add_backend(page.hub, field("name") or "", url=field("url"), gguf=field("gguf"), models=models,
                    jurisdiction=validate_jurisdiction(jurisdiction) if jurisdiction else None,
                    operator=field("operator"), api_key=field("api_key"), actor=_actor(page))

    error = await _run(add)
    return _back("/admin/backends", done=None if error else await _serve_catalog(page, "backend_added"), error=error)


@router.post("/admin/backends/{name}/edit")
async def backend_edit(name: str, request: Request) -> Response:
    page, form = await _staff_form(request)

    def field(key: str) -> str | None:
        return str(form.get(key) or "").strip() or None

    def edit() -> None:
        jurisdiction = field("jurisdiction")
        models = field("models")
        edit_backend(page.hub, name, url=field("url"),
                     models=[m for m in models.replace(",", " ").split() if m] if models is not None else [],
                     jurisdiction=validate_jurisdiction(jurisdiction) if jurisdiction else None,
                     operator=field("operator"), api_key=field("api_key"), actor=_actor(page))

    error = await _run(edit)
    return _back("/admin/backends", done=None if error else await _serve_catalog(page, "backend_changed"),
                 error=error)


@router.post("/admin/backends/{name}/remove")
async def backend_remove(name: str, request: Request) -> Response:
    page, _form = await _staff_form(request)
    error = await _run(lambda: remove_backend(page.hub, name, actor=_actor(page)))
    return _back("/admin/backends", done=None if error else await _serve_catalog(page, "backend_removed"),
                 error=error)


async def _serve_catalog(page: Page, done: str) -> str:
    """The change served at once on this replica (the others follow through the fleet's invalidations)."""
    try:
        await apply_catalog(page.hub)
    except (SovhubError, OSError) as exc:
        # Stored, but a new backend would not start (a wrong address, a dead server): said, not hidden.
        log.warning("backend catalog saved but not served: %s", exc)
        return "backend_not_serving"
    return done


# --- people and organizations ---


@router.get("/admin/people")
async def people_page(request: Request) -> Response:
    page = staff_page(request)
    people = await anyio.to_thread.run_sync(list_people, page.hub)
    return render(page, "admin_people.html", people=people, done=request.query_params.get("done"),
                  error=request.query_params.get("error"))


@router.post("/admin/people")
async def person_create(request: Request) -> Response:
    page, form = await _staff_form(request)
    locale = str(form.get("locale") or "") or None
    error = await _run(lambda: create_user(
        page.hub, str(form.get("email") or ""), str(form.get("password") or ""),
        display_name=str(form.get("display_name") or "").strip() or None, staff=form.get("staff") == "yes",
        locale=locale, actor=_actor(page)))
    return _back("/admin/people", done=None if error else "user_created", error=error)


@router.post("/admin/people/{user_id}/staff")
async def person_staff(user_id: int, request: Request) -> Response:
    page, form = await _staff_form(request)
    grant = form.get("action") == "grant"
    assert page.user is not None
    if not grant and user_id == page.user.id:
        # Withdrawing one's own rights would lock the last staff member out of this page.
        return _back("/admin/people", error="self_staff")
    error = await _run(lambda: set_staff(page.hub, user_id, grant, actor=_actor(page)))
    return _back("/admin/people", done=None if error else ("staff_granted" if grant else "staff_withdrawn"),
                 error=error)


@router.post("/admin/people/{user_id}/reset")
async def person_reset(user_id: int, request: Request) -> Response:
    """A one-time reset (``reset_password``): shown once on this page, never put in a URL or the log."""
    page, _form = await _staff_form(request)
    try:
        token, _ended = await anyio.to_thread.run_sync(lambda: reset_password(page.hub, user_id, actor=_actor(page)))
    except NotFound:
        return _back("/admin/people", error="not_found")
    people = await anyio.to_thread.run_sync(list_people, page.hub)
    link = str(request.base_url).rstrip("/") + f"/reset/{token}"
    return render(page, "admin_people.html", people=people, done=None, error=None, reset_link=link)


@router.post("/admin/orgs")
async def org_create(request: Request) -> Response:
    page, form = await _staff_form(request)
    error = await _run(lambda: create_org(page.hub, str(form.get("name") or ""), actor=_actor(page)))
    return _back("/admin", done=None if error else "org_created", error="org_name" if error == "organization"
                 else error, anchor="#orgs-title")
