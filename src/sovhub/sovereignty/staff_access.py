"""The two-person rule for staff access to a person's content.

One admin requests access with a reason; a second, different admin approves or denies. An
approval lasts `access_grant_hours`; every read is audited and listed on the person's data
page (their export), unless a recorded legal hold defers the notice until `notice_after`
(the access is still counted on the transparency report). Admins are users with `is_staff`.

Every function takes the *authenticated* staff member's user id (`staff_id`: the signed-in
session of the staff console, :mod:`sovhub.assistant.web.admin_content_access`), never a name
someone typed: the two people are compared by id, staff rights are checked again at each step
(an admin who lost them can no longer approve or read), and the audit log records
``user:<id>``. The e-mail kept beside the id is what the person is shown.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from ..store.base import utcnow
from ..store.tables import User
from .tables import AccessRequest, StoredConversation

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["approve", "deny", "list_requests", "read_content", "request_access"]


def _staff(hub: Hub, staff_id: int) -> tuple[int, str]:
    """The (id, e-mail) of an authenticated staff member; PermissionDenied for anyone else."""
    with hub.db.session() as s:
        user = s.get(User, staff_id)
    if user is None or not user.is_staff:
        raise PermissionDenied(f"user {staff_id} is not a staff account; only staff admins may request, "
                               "approve or use access")
    return user.id, user.email


def _actor(staff_id: int) -> str:
    return f"user:{staff_id}"


def request_access(hub: Hub, user_id: int, *, staff_id: int, reason: str, hours: float | None = None,
                   legal_hold: str | None = None, hold_days: int = 90) -> AccessRequest:
    requester_id, requester = _staff(hub, staff_id)
    if len(reason.strip()) < 10:
        raise InvalidRequest("give a reason of at least 10 characters (it is shown to the person)", param="reason")
    hours = hub.settings.sovereignty.access_grant_hours if hours is None else hours
    if not 0 < hours <= 720:
        raise InvalidRequest(f"access may last between 0 and 720 hours, got {hours}", param="hours")
    with hub.db.session() as s:
        if s.get(User, user_id) is None:
            raise NotFound(f"no user {user_id}")
        if user_id == requester_id:
            raise PermissionDenied("staff may not request access to their own content")
        row = AccessRequest(user_id=user_id, requested_by=requester, requested_by_id=requester_id,
                            reason=reason.strip(), hours=hours,
                            legal_hold=legal_hold is not None, legal_hold_reason=legal_hold, uses=[],
                            notice_after=utcnow() + timedelta(days=hold_days) if legal_hold else None)
        s.add(row)
        s.flush()
    hub.emit("access.requested", actor=_actor(requester_id), subject=f"user:{user_id}", request=row.id,
             reason=row.reason, hours=hours, legal_hold=row.legal_hold)
    return row


def _decide(hub: Hub, request_id: int, staff_id: int, approve: bool, note: str | None) -> AccessRequest:
    decider_id, decider = _staff(hub, staff_id)
    with hub.db.session() as s:
        row = s.get(AccessRequest, request_id)
        if row is None:
            raise NotFound(f"no access request {request_id}")
        if row.status != "requested":
            raise Conflict(f"access request {request_id} was already {row.status}")
        if row.requested_by_id is None or decider_id == row.requested_by_id:
            raise PermissionDenied("two-person rule: the approving admin must differ from the requesting admin")
        if decider_id == row.user_id:
            raise PermissionDenied("staff may not decide on access to their own content")
        now = utcnow()
        row.status, row.decided_by, row.decided_by_id, row.decided_at, row.decision_note = (
            "approved" if approve else "denied", decider, decider_id, now, note)
        if approve:
            row.expires_at = now + timedelta(hours=row.hours)
    hub.emit("access.approved" if approve else "access.denied", actor=_actor(decider_id), subject=f"user:{row.user_id}",
             request=row.id, expires_at=row.expires_at.isoformat() if row.expires_at else None)
    return row


def approve(hub: Hub, request_id: int, *, staff_id: int, note: str | None = None) -> AccessRequest:
    return _decide(hub, request_id, staff_id, True, note)


def deny(hub: Hub, request_id: int, *, staff_id: int, note: str | None = None) -> AccessRequest:
    return _decide(hub, request_id, staff_id, False, note)


def list_requests(hub: Hub, *, user_id: int | None = None) -> list[AccessRequest]:
    with hub.db.session() as s:
        stmt = select(AccessRequest).order_by(AccessRequest.id)
        if user_id is not None:
            stmt = stmt.where(AccessRequest.user_id == user_id)
        return list(s.scalars(stmt))


def read_content(hub: Hub, request_id: int, *, staff_id: int) -> list[dict[str, Any]]:
    """The person's stored content, for one of the two admins of an approved, unexpired request."""
    from .crypto import ContentVault

    reader_id, reader = _staff(hub, staff_id)
    now = utcnow()
    with hub.db.session() as s:
        row = s.get(AccessRequest, request_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no access request {request_id}")
        if row.status != "approved":
            raise PermissionDenied(f"access request {request_id} is {row.status}, not approved")
        if row.expires_at is None or row.expires_at <= now:
            raise PermissionDenied(f"access request {request_id} expired")
        if reader_id not in (row.requested_by_id, row.decided_by_id):
            raise PermissionDenied("only the requesting or approving admin may use this access")
        row.uses = [*(row.uses or []), {"by": reader, "by_id": reader_id, "at": now.isoformat()}]
        user_id = row.user_id
        convs = list(s.scalars(select(StoredConversation).where(StoredConversation.user_id == user_id)
                               .order_by(StoredConversation.id)))
    hub.emit("access.used", actor=_actor(reader_id), subject=f"user:{user_id}", request=request_id, items=len(convs))
    vault = hub.services.get(ContentVault)
    out = []
    for conv in convs:
        out.append({"request_id": conv.request_id, "model": conv.model, "created_at": conv.created_at.isoformat(),
                    **json.loads(vault.decrypt(conv.owner_kind, conv.owner_id, conv.content))})
    return out
