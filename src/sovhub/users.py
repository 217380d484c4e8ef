"""People's e-mail addresses: one normal form, written once, and the one lookup by it.

An address is stored as ``normalize_email(text)``: Unicode NFKC (full-width ``Ａ`` is ``A``, the
ligature ``ﬁ`` is ``fi``), then full case folding (``Å`` is ``å``, ``ß`` is ``ss``), then NFKC again
(folding can leave a string that is not in normal form). Every place that finds a person by
e-mail (sign-in, export, erasure, staff access, the ``users`` commands) goes through
:func:`user_by_email`, so "erase ÅSA@x.org" finds the person stored as "åsa@x.org". A database's
own ``lower()`` is not used: SQLite's folds ASCII only.

Usage::

    with hub.db.session() as s:
        user = user_by_email(s, "Alice@Example.ORG")
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from .store.tables import User

__all__ = ["normalize_email", "user_by_email"]


def normalize_email(text: str) -> str:
    """The stored form of an e-mail address (NFKC, casefold, NFKC; surrounding blanks removed)."""
    folded = unicodedata.normalize("NFKC", text.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)


def user_by_email(session: Session, email: str) -> User | None:
    """The account with this address in any case or width, or None (one indexed equality lookup)."""
    return session.scalar(select(User).where(User.email == normalize_email(email)))
