"""What an organization must see once: a decision on its application, a grant running low.

A notice is a row (``credit_notices``) with a ``kind`` and the facts it is about; its text is
not stored, so each member of the organization reads it in their own UI language (the web app
translates it; the API answers the facts). A notice stays until a member dismisses it.

Low balance: every second, one replica's credits housekeeping reads the live balances of the open
grants (one MGET) and compares each with ``credits.low_balance_percent`` of what was granted.
A grant that goes under it is marked (``credit_grants.low_since``, set by a conditional update, so
of several replicas one wins) and gets ONE notice and one ``credits.low_balance`` event per
crossing; once its balance is back over the line (a reservation released), the mark is cleared
and the next crossing notifies again. Admission reads the marks from memory to add
``x-sovhub-credits-low`` to the answers of an organization whose paying grant is low.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..store.base import as_utc, utcnow
from .amounts import as_number
from .tables import CreditGrant, CreditNotice

if TYPE_CHECKING:
    from ..hub import Hub
    from .live import LiveStore
    from .state import GrantFacts

__all__ = ["LOW_HEADER", "LowBalanceWatch", "add_notice", "dismiss_notice", "list_notices", "low_threshold"]

log = logging.getLogger("sovhub.credits")

LOW_HEADER = "x-sovhub-credits-low"


def add_notice(s: Session, org_id: int, kind: str, *, grant_id: int | None = None,
               application_id: int | None = None, **data: Any) -> CreditNotice:
    row = CreditNotice(org_id=org_id, kind=kind, grant_id=grant_id, application_id=application_id, data=data)
    s.add(row)
    s.flush()
    return row


def notice_view(row: CreditNotice) -> dict[str, Any]:
    return {"id": row.id, "object": "organization.notice", "kind": row.kind, "grant": row.grant_id,
            "application": row.application_id, "data": dict(row.data or {}),
            "created_at": as_utc(row.created_at).isoformat(),
            "dismissed_at": as_utc(row.dismissed_at).isoformat() if row.dismissed_at else None}


def list_notices(hub: Hub, org_id: int, *, include_dismissed: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    with hub.db.session() as s:
        query = select(CreditNotice).where(CreditNotice.org_id == org_id)
        if not include_dismissed:
            query = query.where(CreditNotice.dismissed_at.is_(None))
        rows = s.scalars(query.order_by(CreditNotice.id.desc()).limit(limit)).all()
        return [notice_view(r) for r in rows]


def dismiss_notice(hub: Hub, notice_id: int, org_id: int, *, actor: str) -> None:
    """Dismiss one of `org_id`'s notices (another organization's is not found: 404)."""
    with hub.db.session() as s:
        row = s.get(CreditNotice, notice_id)
        if row is None or row.org_id != org_id:
            raise NotFound(f"no notice {notice_id}", param="notice")
        if row.dismissed_at is not None:
            return
        row.dismissed_at, row.dismissed_by = utcnow(), actor
        kind = row.kind
    hub.emit("notice.dismissed", actor=actor, subject=f"org:{org_id}", notice=notice_id, kind=kind)


def low_threshold(granted: int, percent: float) -> int:
    """The balance under which a grant of `granted` micro-credits is low (whole micro-credits)."""
    return granted * round(percent * 100) // 10_000


class LowBalanceWatch:
    """Marks grants that crossed under the threshold, once per crossing (see the module's docstring)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._low: set[int] | None = None
        self.notified = 0

    def is_low(self, grant_id: int) -> bool:
        return self._low is not None and grant_id in self._low

    def reload(self) -> None:
        with self.hub.db.session() as s:
            self._low = set(s.scalars(select(CreditGrant.id).where(CreditGrant.low_since.is_not(None))))

    async def check(self, grants: list[GrantFacts], live: LiveStore, now: datetime | None = None) -> list[int]:
        """Compare the open grants' live balances with the threshold; returns the grants newly noticed."""
        percent = self.hub.settings.credits.low_balance_percent
        if percent <= 0:
            return []
        if self._low is None:
            await asyncio.to_thread(self.reload)
        assert self._low is not None
        now = now or utcnow()
        current = [g for g in grants if not g.closed and (g.expires_at is None or g.expires_at > now)]
        if not current:
            return []
        balances = await live.balances([g.id for g in current])
        down: list[tuple[GrantFacts, int]] = []
        up: list[int] = []
        for g in current:
            if g.id not in balances:
                continue
            low = balances[g.id] < low_threshold(g.amount, percent)
            if low and g.id not in self._low:
                down.append((g, balances[g.id]))
            elif not low and g.id in self._low:
                up.append(g.id)
        if not down and not up:
            return []
        return await asyncio.to_thread(self._record, down, up, percent)

    def _record(self, down: list[tuple[GrantFacts, int]], up: list[int], percent: float) -> list[int]:
        assert self._low is not None
        noticed: list[tuple[GrantFacts, int]] = []
        now = utcnow()
        with self.hub.db.session() as s:
            for grant_id in up:
                s.execute(update(CreditGrant).where(CreditGrant.id == grant_id, CreditGrant.low_since.is_not(None))
                          .values(low_since=None))
                self._low.discard(grant_id)
            for g, balance in down:
                # Of several replicas seeing the same crossing, the one whose update matched notifies.
                won = s.execute(update(CreditGrant).where(CreditGrant.id == g.id, CreditGrant.low_since.is_(None))
                                .values(low_since=now))
                self._low.add(g.id)
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    add_notice(s, g.org_id, "low_balance", grant_id=g.id, programme=g.programme,
                               balance=as_number(balance), granted=as_number(g.amount), percent=percent)
                    noticed.append((g, balance))
        for g, balance in noticed:
            self.notified += 1
            self.hub.emit("credits.low_balance", subject=f"org:{g.org_id}", grant=g.id, programme=g.programme,
                          balance=as_number(balance), granted=as_number(g.amount), percent=percent)
        return [g.id for g, _ in noticed]
