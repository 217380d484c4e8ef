"""Server-side web sessions: create, look up, revoke one, revoke all of a person's.

The token is 32 random bytes (URL-safe); only its SHA-256 is stored, so a copy of the database
does not sign anyone in. Each request reads its session row by primary key (no cache), so a
revocation on one replica holds on every replica from the next request on. `last_seen_at` is
written at most once a minute per session, not on every request.

Usage::

    token = create_session(hub, user_id, acr=None, idp=None, user_agent=ua, address=ip)
    row = find_session(hub, token)          # ActiveSession | None
    revoke_session(hub, token, "sign_out")
    revoke_user_sessions(hub, user_id, "password_changed")   # -> how many were ended
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from ..store.base import utcnow
from ..store.tables import User
from .tables import WebSession

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "ActiveSession",
    "create_session",
    "erase_sessions",
    "export_sessions",
    "find_session",
    "revoke_session",
    "revoke_user_sessions",
    "token_hash",
]

_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ActiveSession:
    user_id: int
    acr: str | None
    idp: str | None
    created_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_session(
    hub: Hub, user_id: int, *, acr: str | None, idp: str | None, user_agent: str | None = None,
    address: str | None = None,
) -> str:
    """A new session for `user_id`; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with hub.db.session() as s:
        # Housekeeping on the sign-in path (not on every request): forget this person's dead sessions.
        s.execute(delete(WebSession).where(WebSession.user_id == user_id, WebSession.expires_at < now))
        s.add(WebSession(
            id=token_hash(token), user_id=user_id, acr=acr, idp=idp, created_at=now, last_seen_at=now,
            expires_at=now + timedelta(seconds=hub.settings.access.session_max_age_s),
            user_agent=(user_agent or "")[:300] or None, address=(address or "")[:64] or None,
        ))
    return token


def find_session(hub: Hub, token: str) -> ActiveSession | None:
    """The live session of `token` (its person still exists, not revoked, not expired), or None."""
    now = utcnow()
    with hub.db.session() as s:
        row = s.execute(
            select(WebSession).join(User, User.id == WebSession.user_id).where(WebSession.id == token_hash(token))
        ).scalar_one_or_none()
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if now - row.last_seen_at >= _TOUCH_EVERY:
            row.last_seen_at = now
        return ActiveSession(user_id=row.user_id, acr=row.acr, idp=row.idp, created_at=row.created_at)


def revoke_session(hub: Hub, token: str, reason: str) -> bool:
    """End one session (sign-out). True when a live session was ended."""
    with hub.db.session() as s:
        done = s.execute(
            update(WebSession).where(WebSession.id == token_hash(token), WebSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        return bool(getattr(done, "rowcount", 0))


def revoke_user_sessions(hub: Hub, user_id: int, reason: str) -> int:
    """End every session of `user_id` at once (password changed, staff rights lost); how many."""
    with hub.db.session() as s:
        done = s.execute(
            update(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )
        count = int(getattr(done, "rowcount", 0) or 0)
    if count:
        hub.emit("user.sessions_revoked", actor="system", subject=f"user:{user_id}", reason=reason, count=count)
    return count


def erase_sessions(hub: Hub, user_id: int) -> int:
    """Delete every session row of `user_id` (erasure: the addresses and browsers go too)."""
    with hub.db.session() as s:
        done = s.execute(delete(WebSession).where(WebSession.user_id == user_id))
        return int(getattr(done, "rowcount", 0) or 0)


def export_sessions(hub: Hub, user_id: int) -> list[dict[str, Any]]:
    """The person's sessions for their data export (never the token hash)."""
    with hub.db.session() as s:
        rows = s.scalars(select(WebSession).where(WebSession.user_id == user_id).order_by(WebSession.created_at))
        return [
            {"created_at": r.created_at.isoformat(), "last_seen_at": r.last_seen_at.isoformat(),
             "expires_at": r.expires_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
             "revoked_reason": r.revoked_reason, "method": r.idp or "password", "level": r.acr,
             "user_agent": r.user_agent, "address": r.address}
            for r in rows
        ]
