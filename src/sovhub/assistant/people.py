"""A person's local account as the web assistant keeps it: creation, password, staff rights, UI language.

The `sovhub users` commands (:mod:`sovhub.assistant.cli`), the sign-in routes and the operator
console all call these, so a change is validated and audited the same way wherever it is made.
Each is a short synchronous transaction: async callers run it in a worker thread.

A changed password and lost staff rights end every session of the person at once
(:func:`sovhub.access.session_store.revoke_user_sessions`): whoever signed in with the old
password, or as staff, is signed out on every replica from their next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..access.session_store import revoke_user_sessions
from ..errors import Conflict, InvalidRequest, NotFound
from ..store.tables import User
from ..users import normalize_email, user_by_email
from .passwords import MIN_LENGTH, hash_password, needs_rehash, verify_password

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = [
    "RESET_TTL_S", "PersonRow", "check_password", "create_user", "find_user", "list_people", "load_user",
    "redeem_reset", "reset_is_valid", "reset_password", "save_locale", "set_password", "set_staff",
]

# How long a staff-issued reset link can be used (once).
RESET_TTL_S = 24 * 3600
# A reset is kept where the password hash was: the old password stops working at once, argon2
# never verifies it (not a hash of its format), and a new password overwrites it (one use).
_RESET_PREFIX = "reset$"


@dataclass(frozen=True, slots=True)
class PersonRow:
    """One account as the console lists it (no password hash: only whether there is one)."""

    id: int
    email: str
    name: str | None
    staff: bool
    created_at: datetime
    has_password: bool


def _check_password(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"a password needs at least {MIN_LENGTH} characters", param="password")


def create_user(
    hub: Hub, email: str, password: str, *, display_name: str | None = None, staff: bool = False,
    locale: str | None = None, actor: str = "cli",
) -> int:
    """Create a local account; the e-mail is stored normalised, the password only as an argon2id hash."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidRequest(f"{email!r} is not an e-mail address", param="email")
    _check_password(password)
    with hub.db.session() as s:
        if user_by_email(s, email) is not None:
            raise Conflict(f"an account for {email} already exists")
        user = User(email=email, display_name=display_name, password_hash=hash_password(password),
                    is_staff=staff, locale=locale)
        s.add(user)
        s.flush()
        user_id = user.id
    hub.emit("user.created", actor=actor, subject=f"user:{user_id}", staff=staff)
    return user_id


def find_user(hub: Hub, email: str) -> int:
    """The id of the account with this address (any case or width); NotFound otherwise."""
    with hub.db.session() as s:
        user = user_by_email(s, email)
        if user is None:
            raise NotFound(f"no user with e-mail {email.strip()!r}")
        return user.id


def load_user(hub: Hub, user_id: int) -> User | None:
    """The account, detached from its session (a page reads it after the transaction), or None."""
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is not None:
            s.expunge(user)
        return user


def list_people(hub: Hub, limit: int = 500) -> list[PersonRow]:
    """The first `limit` accounts, oldest first."""
    with hub.db.session() as s:
        users = s.scalars(select(User).order_by(User.id).limit(limit)).all()
        return [PersonRow(u.id, u.email, u.display_name, u.is_staff, u.created_at, u.password_hash is not None)
                for u in users]


def set_password(hub: Hub, user_id: int, password: str, *, actor: str = "cli") -> int:
    """Replace the password; every session of the person ends. Returns how many sessions ended."""
    _check_password(password)
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        user.password_hash = hash_password(password)
    ended = revoke_user_sessions(hub, user_id, "password_changed")
    hub.emit("user.password_changed", actor=actor, subject=f"user:{user_id}", sessions_ended=ended)
    return ended


def set_staff(hub: Hub, user_id: int, staff: bool, *, actor: str = "cli") -> int:
    """Grant or withdraw staff rights; withdrawing ends every session of the person. Sessions ended."""
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        was = user.is_staff
        user.is_staff = staff
    ended = revoke_user_sessions(hub, user_id, "staff_withdrawn") if was and not staff else 0
    if was != staff:
        hub.emit("user.staff_granted" if staff else "user.staff_withdrawn", actor=actor, subject=f"user:{user_id}",
                 sessions_ended=ended)
    return ended


def check_password(hub: Hub, email: str, password: str) -> int | None:
    """The id of the person with this address and password, or None; an outdated hash is upgraded."""
    with hub.db.session() as s:
        user = user_by_email(s, email)
        stored = user.password_hash if user is not None else None
        if not verify_password(stored, password) or user is None:
            return None
        if stored is not None and needs_rehash(stored):
            user.password_hash = hash_password(password)
        return user.id


def save_locale(hub: Hub, user_id: int, code: str) -> None:
    """Remember the UI language a signed-in person chose."""
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is not None:
            user.locale = code


def _reset_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def reset_password(hub: Hub, user_id: int, *, actor: str = "cli", now: float | None = None) -> tuple[str, int]:
    """Staff's reset: the password stops working, every session of the person ends, and a one-time
    token (for the link ``/reset/<token>``, valid RESET_TTL_S) lets them choose a new one.
    Returns (token, sessions ended). Only the token's SHA-256 is stored; a second reset voids the first."""
    nonce = secrets.token_urlsafe(24)
    expires = int((now if now is not None else time.time()) + RESET_TTL_S)
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        user.password_hash = f"{_RESET_PREFIX}{expires}${_reset_digest(nonce)}"
    ended = revoke_user_sessions(hub, user_id, "password_reset")
    hub.emit("user.password_reset", actor=actor, subject=f"user:{user_id}", sessions_ended=ended)
    return f"{user_id}.{nonce}", ended


def _reset_user(s: Session, token: str, now: float) -> User | None:
    user_part, _, nonce = token.partition(".")
    if not user_part.isdigit() or not nonce:
        return None
    user = s.get(User, int(user_part))
    stored = user.password_hash if user is not None else None
    if user is None or not stored or not stored.startswith(_RESET_PREFIX):
        return None
    expires, _, digest = stored.removeprefix(_RESET_PREFIX).partition("$")
    if not expires.isdigit() or int(expires) < now:
        return None
    return user if hmac.compare_digest(digest, _reset_digest(nonce)) else None


def reset_is_valid(hub: Hub, token: str, *, now: float | None = None) -> bool:
    with hub.db.session() as s:
        return _reset_user(s, token, now if now is not None else time.time()) is not None


def redeem_reset(hub: Hub, token: str, password: str, *, now: float | None = None) -> int:
    """Set the new password with a reset token, once; NotFound for a used, voided, expired or forged one."""
    _check_password(password)
    with hub.db.session() as s:
        user = _reset_user(s, token, now if now is not None else time.time())
        if user is None:
            raise NotFound("this reset link is not valid (used, replaced or expired)", code="reset_not_found")
        user.password_hash = hash_password(password)
        user_id = user.id
    hub.emit("user.password_changed", actor=f"user:{user_id}", subject=f"user:{user_id}", sessions_ended=0)
    return user_id
