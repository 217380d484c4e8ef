"""The staff appeals queue: filed appeals, one appeal, and a decision with a reason the person reads.

Each decision calls :func:`sovhub.safety.appeals.decide_appeal`, the function behind
``sovhub appeals decide`` and the API, so it is validated and audited the same way; the staff
member is recorded as ``user:<id>``. The person sees the outcome on their "My data" page and
under the blocked message, in their own UI language (the reason is the reviewer's words).
"""

from __future__ import annotations

from typing import Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from sovhub import linear_re

from ...errors import Conflict, NotFound
from .admin_access import _actor, _attempt, _back, _staff_form
from .auth import staff_page
from .render import render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_APPEAL_ID = linear_re.compile(r"apl_[0-9a-f]{24}")
_STATUSES = ("filed", "upheld", "overturned")
_OUTCOMES: dict[str, Literal["upheld", "overturned"]] = {"uphold": "upheld", "overturn": "overturned"}


@router.get("/admin/appeals")
async def appeals_page(request: Request) -> Response:
    from ...safety.appeals import list_appeals

    page = staff_page(request)
    status = request.query_params.get("status", "filed")
    if status not in _STATUSES:
        status = "filed"
    # Filed ones oldest first (the queue's order); decided ones newest first.
    appeals = await anyio.to_thread.run_sync(lambda: list_appeals(page.hub, status, limit=200))
    if status != "filed":
        appeals.reverse()
    return render(page, "admin_appeals.html", appeals=appeals, shown_status=status,
                  done=request.query_params.get("done"), error=request.query_params.get("error"))


@router.get("/admin/appeals/{appeal_id}")
async def appeal_page(appeal_id: str, request: Request) -> Response:
    from ...safety.appeals import get_appeal

    page = staff_page(request)
    if not _APPEAL_ID.fullmatch(appeal_id):
        return _back("/admin/appeals", error="no_appeal")
    try:
        appeal = await anyio.to_thread.run_sync(lambda: get_appeal(page.hub, None, appeal_id))
    except NotFound:
        return _back("/admin/appeals", error="no_appeal")
    return render(page, "admin_appeal.html", appeal=appeal, done=request.query_params.get("done"),
                  error=request.query_params.get("error"))


@router.post("/admin/appeals/{appeal_id}/decide")
async def decide(appeal_id: str, request: Request) -> Response:
    from ...safety.appeals import decide_appeal

    page, form = await _staff_form(request)
    if not _APPEAL_ID.fullmatch(appeal_id):
        return _back("/admin/appeals", error="no_appeal")
    back = f"/admin/appeals/{appeal_id}"
    outcome = _OUTCOMES.get(str(form.get("outcome") or ""))
    if outcome is None:
        return _back(back, error="outcome")
    reason = str(form.get("reason") or "")
    error = await _attempt(lambda: decide_appeal(page.hub, appeal_id, outcome, reason, _actor(page)),
                           {NotFound: "no_appeal", Conflict: "decided"})
    if error == "no_appeal":
        return _back("/admin/appeals", error=error)
    if error:
        return _back(back, error=error)
    return _back("/admin/appeals", done=outcome)
