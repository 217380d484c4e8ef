"""'My data': the person's account, export, erasure and notices of staff access to their content.

Export and erasure are the sovereignty area's (:mod:`sovhub.sovereignty.rights`); this page is
their face in the web app. The JSON export itself is served at ``/hub/v1/me/export``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...access.csrf import verify_csrf
from ...access.sessions import clear_session
from ...errors import Conflict
from ...hub import Hub
from ...pipeline import Principal
from ...safety.appeals import appeals_of
from ..chat_store import ChatStore
from .auth import signed_in
from .render import render

__all__ = ["router", "staff_access_notices"]

router = APIRouter(include_in_schema=False)


def staff_access_notices(hub: Hub, user_id: int) -> list[dict[str, Any]]:
    """Staff requests to read this person's content; one under legal hold shows once its notice date passed."""
    from ...sovereignty.staff_access import list_requests

    now = datetime.now(UTC)
    out = []
    for row in list_requests(hub, user_id=user_id):
        notice_after = row.notice_after
        if row.legal_hold and (notice_after is None or notice_after > now):
            continue
        out.append({"id": row.id, "status": row.status, "reason": row.reason, "created_at": row.created_at,
                    "expires_at": row.expires_at, "uses": len(row.uses or [])})
    return out


@router.get("/me")
async def my_data(request: Request) -> Response:
    page = signed_in(request)
    assert page.user is not None
    user_id = page.user.id
    count = await anyio.to_thread.run_sync(ChatStore(page.hub).count, user_id)
    notices = await anyio.to_thread.run_sync(staff_access_notices, page.hub, user_id)
    appeals = await anyio.to_thread.run_sync(appeals_of, page.hub, Principal(org_id=None, user_id=user_id))
    return render(page, "me.html", conversation_count=count, notices=notices, appeals=appeals,
                  erase_error=request.query_params.get("error"))


@router.post("/me/erase")
async def erase_me(request: Request) -> Response:
    """Erase the signed-in person after an explicit confirmation; the session ends."""
    from ...sovereignty.rights import erase_user

    page = signed_in(request)
    assert page.user is not None
    form = await request.form()
    verify_csrf(request, form.get("csrf_token"))
    if form.get("confirm") != "yes":
        return RedirectResponse("/me?error=confirm", status_code=303)
    user_id = page.user.id
    try:
        await anyio.to_thread.run_sync(lambda: erase_user(page.hub, user_id, actor=f"user:{user_id}"))
    except Conflict:
        return RedirectResponse("/me?error=hold", status_code=303)
    response = RedirectResponse("/login?erased=1", status_code=303)
    clear_session(request, response)
    return response
