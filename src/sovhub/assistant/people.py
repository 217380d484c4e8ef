"""What the web assistant reads and writes about a person's account: password sign-in, UI language.

No HTTP here: the sign-in routes (``assistant/web/auth.py``) call these in a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..store.tables import User
from ..users import user_by_email
from .web.passwords import hash_password, needs_rehash, verify_password

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["check_password", "save_locale"]


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
