"""A web-assistant person's own access, set by staff: their model tier and their quotas.

Without a change a person has tier ``open`` and the hub's ``access.user_limits``. Staff can give
one person a tier (they may then use that tier's models as well as the open ones) and quotas that
replace the defaults field by field (a field left out keeps its default). The admission control
reads both from :class:`~sovhub.access.state.AccessState`, so a person's question never waits for
the database; a change here reloads this replica's copy at once, the other replicas through the
fleet's invalidations (event names start with ``person.``).

The console's person page (``/admin/people/<id>``) calls these functions; each change is audited
with the staff member as actor.

>>> set_person_limits(hub, 7, {"rpd": 50, "tpd": None}, actor="user:1")
{'rpd': 50}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ..errors import NotFound
from ..store.base import utcnow
from ..store.tables import User
from .quotas import merge_limits
from .state import OPEN, AccessState
from .tables import PersonAccess
from .tiers import validate_tier

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["PersonAccessView", "person_access", "set_person_limits", "set_person_tier"]


@dataclass(frozen=True, slots=True)
class PersonAccessView:
    """What the console shows of one person's access."""

    user_id: int
    tier: str
    #: The quotas staff set for this person (only those fields).
    limits: dict[str, int]
    #: The hub's defaults for people (``access.user_limits``).
    defaults: dict[str, int]
    #: What admission applies: the defaults with this person's quotas over them.
    effective: dict[str, int]
    updated_by: str | None
    updated_at: datetime | None


def person_access(hub: Hub, user_id: int) -> PersonAccessView:
    """The person's tier and quotas as stored (NotFound for no such person)."""
    with hub.db.session() as s:
        _require_person(s, user_id)
        row = s.get(PersonAccess, user_id)
        limits = {k: int(v) for k, v in (row.limits or {}).items()} if row is not None else {}
        defaults = {k: int(v) for k, v in hub.settings.access.user_limits.items()}
        return PersonAccessView(
            user_id=user_id, tier=(row.tier if row is not None and row.tier else OPEN), limits=limits,
            defaults=defaults, effective={**defaults, **limits},
            updated_by=row.updated_by if row is not None else None,
            updated_at=row.updated_at if row is not None else None,
        )


def set_person_limits(hub: Hub, user_id: int, changes: Mapping[str, int | None], *, actor: str) -> dict[str, int]:
    """Set (a whole number >= 0) or drop (None: back to the default) quotas of one person.

    Returns the person's own quotas now stored. Fields are those of the rate limiter (``FIELDS``).
    """
    merge_limits({}, changes)  # bad input is refused the same way whether or not the person exists
    with hub.db.session() as s:
        _require_person(s, user_id)
        row = _row(s, user_id, actor)
        current = merge_limits(row.limits or {}, changes)
        row.limits = current
        _drop_if_default(s, row)
    hub.services.get(AccessState).load()
    hub.emit("person.limits_set", actor=actor, subject=f"user:{user_id}", limits=current)
    return current


def set_person_tier(hub: Hub, user_id: int, tier: str, *, actor: str) -> str:
    """Give the person a tier (``open``: none besides the open models); returns the tier now set."""
    tier = validate_tier(tier)
    with hub.db.session() as s:
        _require_person(s, user_id)
        row = _row(s, user_id, actor)
        previous = row.tier or OPEN
        row.tier = None if tier == OPEN else tier
        _drop_if_default(s, row)
    hub.services.get(AccessState).load()
    hub.emit("person.tier_set", actor=actor, subject=f"user:{user_id}", tier=tier, previous=previous)
    return tier


def _require_person(s: Session, user_id: int) -> None:
    if s.get(User, user_id) is None:
        raise NotFound(f"no user {user_id}", param="user")


def _row(s: Session, user_id: int, actor: str) -> PersonAccess:
    row = s.get(PersonAccess, user_id)
    if row is None:
        row = PersonAccess(user_id=user_id, tier=None, limits={}, updated_by=actor)
        s.add(row)
    row.updated_by, row.updated_at = actor[:120], utcnow()
    return row


def _drop_if_default(s: Session, row: PersonAccess) -> None:
    # Back to the defaults: no row, so the snapshot holds only the people staff changed.
    if row.tier is None and not row.limits:
        if row in s.new:
            s.expunge(row)
        else:
            s.delete(row)
