"""What admission needs about credits, held in memory: grants by organization, prices, programmes.

Reloaded every ``access.state_refresh_s`` in the background (the app's lifespan; ``snapshot.py``), and at once
after a change made in this process; a grant or price made elsewhere (another replica, the CLI) when the fleet's
invalidation arrives (``credits.plugin``), within the refresh interval when Redis did not carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..snapshot import Snapshot
from ..store.base import as_utc
from .prices import PriceBook, list_prices
from .tables import CreditGrant, CreditProgramme

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["CreditState", "GrantFacts"]


@dataclass(frozen=True, slots=True)
class GrantFacts:
    id: int
    org_id: int
    programme_id: int
    programme: str
    amount: int
    expires_at: datetime | None
    closed: bool
    models: frozenset[str]

    def pays_for(self, model: str, now: datetime) -> bool:
        if self.closed or (self.expires_at is not None and self.expires_at <= now):
            return False
        return not self.models or model in self.models


_FAR = datetime.max.replace(tzinfo=UTC)


class CreditState(Snapshot):
    label = "credit state"

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._grants: dict[int, list[GrantFacts]] = {}
        self.prices = PriceBook([])

    def read(self) -> None:
        with self.hub.db.session() as s:
            programmes = {p.id: p for p in s.scalars(select(CreditProgramme))}
            grants: dict[int, list[GrantFacts]] = {}
            for g in s.scalars(select(CreditGrant).order_by(CreditGrant.id)):
                programme = programmes[g.programme_id]
                grants.setdefault(g.org_id, []).append(GrantFacts(
                    g.id, g.org_id, g.programme_id, programme.name, g.amount,
                    as_utc(g.expires_at) if g.expires_at else None, g.closed_at is not None,
                    frozenset(programme.models or []),
                ))
        for facts in grants.values():
            # The grant that expires first is spent first; grants without an expiry last, oldest first.
            facts.sort(key=lambda f: (f.expires_at is None, f.expires_at or _FAR, f.id))
        self._grants = grants
        self.prices = PriceBook(list_prices(self.hub))

    def grants(self, org_id: int) -> list[GrantFacts]:
        """Every grant of the organization, in spending order (open or not)."""
        self.fresh()
        return self._grants.get(org_id, [])

    def book(self) -> PriceBook:
        self.fresh()
        return self.prices

    def open_grants(self) -> list[GrantFacts]:
        self.fresh()
        return [g for facts in self._grants.values() for g in facts if not g.closed]
