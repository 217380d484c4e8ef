"""What the hot path needs to know, held in memory: model tiers, verified orgs, org quotas, people's own
tiers and quotas.

A request must not wait for the database, so each replica keeps a snapshot and reloads it
every ``access.state_refresh_s`` seconds in the background (the app's lifespan; ``snapshot.py``).
A change made in this process (CLI, admin page) is applied at once; one made elsewhere within the
refresh interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..snapshot import Snapshot
from .tables import ModelTier, OrgAccess, PersonAccess

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["OPEN", "VERIFIED", "AccessState", "OrgFacts", "PersonFacts"]

OPEN = "open"
VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class OrgFacts:
    verified: bool = False
    limits: dict[str, Any] = field(default_factory=dict)
    tiers: frozenset[str] = frozenset()

    def may_use(self, tier: str) -> bool:
        if tier == OPEN:
            return True
        if tier == VERIFIED:
            return self.verified
        # A custom tier is granted explicitly; it does not follow from verification.
        return tier in self.tiers


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """A web-assistant person's own access: their tier (besides `open`) and the quotas staff set."""

    tier: str = OPEN
    limits: dict[str, Any] = field(default_factory=dict)

    def may_use(self, tier: str) -> bool:
        return tier in (OPEN, self.tier)


class AccessState(Snapshot):
    label = "access state"

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._tiers: dict[str, str] = {}
        self._orgs: dict[int, OrgFacts] = {}
        self._people: dict[int, PersonFacts] = {}

    def read(self) -> None:
        with self.hub.db.session() as s:
            tiers = {row.model: row.tier for row in s.scalars(select(ModelTier))}
            orgs = {
                row.org_id: OrgFacts(
                    verified=row.verified_at is not None,
                    limits=dict(row.limits or {}),
                    tiers=frozenset(row.tiers or []),
                )
                for row in s.scalars(select(OrgAccess))
            }
            # Only the people staff changed have a row: the rest are the defaults.
            people = {
                row.user_id: PersonFacts(tier=row.tier or OPEN, limits=dict(row.limits or {}))
                for row in s.scalars(select(PersonAccess))
            }
        self._tiers, self._orgs, self._people = tiers, orgs, people

    def tier(self, model: str) -> str:
        self.fresh()
        return self._tiers.get(model, OPEN)

    def org(self, org_id: int | None) -> OrgFacts:
        self.fresh()
        if org_id is None:
            return OrgFacts()
        return self._orgs.get(org_id, OrgFacts())

    def person(self, user_id: int) -> PersonFacts:
        self.fresh()
        return self._people.get(user_id, PersonFacts())
