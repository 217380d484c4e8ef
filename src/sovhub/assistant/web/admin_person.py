"""The console's page for one person of the web assistant: their tier and their own quotas.

The forms call :func:`~sovhub.access.person_access.set_person_tier` and
:func:`~sovhub.access.person_access.set_person_limits` (validated and audited there, actor
``user:<id>`` of the staff member); they post and redirect back with ``?done=`` or ``?error=``,
as the organization page does. The change applies to the person's next question.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from ...access.person_access import person_access, set_person_limits, set_person_tier
from ...access.ratelimit import FIELDS
from ...access.state import OPEN, VERIFIED
from ...access.tiers import list_tiers
from ...errors import NotFound
from ...hub import Hub
from ..people import load_user
from .admin_access import _actor, _attempt, _back, _staff_form, parse_limits
from .auth import Redirect, staff_page
from .render import Page, render

__all__ = ["person_path", "router"]

router = APIRouter(include_in_schema=False)


def person_path(user_id: int) -> str:
    return f"/admin/people/{user_id}"


def _known_tiers(hub: Hub, current: str) -> list[str]:
    """Tiers a person can be given: open, verified, those models are in, those with limits, theirs."""
    return sorted({OPEN, VERIFIED, current, *list_tiers(hub).values(), *hub.settings.access.tier_limits})


def _detail(hub: Hub, user_id: int) -> dict[str, Any] | None:
    person = load_user(hub, user_id)
    if person is None:
        return None
    access = person_access(hub, user_id)
    tiers = list_tiers(hub)
    return {"person": person, "access": access, "tiers": _known_tiers(hub, access.tier),
            "tier_models": sorted(m for m, t in tiers.items() if t == access.tier)}


@router.get("/admin/people/{user_id}")
async def person_page(user_id: int, request: Request) -> Response:
    page = staff_page(request)
    data = await anyio.to_thread.run_sync(_detail, page.hub, user_id)
    if data is None:
        return _back("/admin/people", error="not_found")
    return render(page, "admin_person.html", limit_fields=FIELDS, done=request.query_params.get("done"),
                  error=request.query_params.get("error"), **data)


async def _person_form(request: Request, user_id: int) -> tuple[Page, FormData]:
    page, form = await _staff_form(request)
    if await anyio.to_thread.run_sync(load_user, page.hub, user_id) is None:
        raise Redirect(_back("/admin/people", error="not_found"))
    return page, form


@router.post("/admin/people/{user_id}/limits")
async def person_limits(user_id: int, request: Request) -> Response:
    page, form = await _person_form(request, user_id)
    # An empty field gives that quota back to the hub's default for people.
    error = await _attempt(lambda: set_person_limits(page.hub, user_id, parse_limits(form), actor=_actor(page)),
                           {NotFound: "not_found"})
    if error == "quota":
        error = "person_quota"  # here an empty field means the default, not "no limit"
    return _back(person_path(user_id), done=None if error else "person_limits", error=error,
                 anchor="#person-limits-title")


@router.post("/admin/people/{user_id}/tier")
async def person_tier(user_id: int, request: Request) -> Response:
    page, form = await _person_form(request, user_id)
    tier = str(form.get("tier") or "")
    error = await _attempt(lambda: set_person_tier(page.hub, user_id, tier, actor=_actor(page)),
                           {NotFound: "not_found"})
    return _back(person_path(user_id), done=None if error else "person_tier", error=error,
                 anchor="#person-tier-title")
