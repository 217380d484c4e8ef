"""What the hot path needs to know, held in memory: model tiers, verified orgs, org quotas.

A request must not wait for the database, so each replica keeps a snapshot and reloads it
every ``access.state_refresh_s`` seconds in the background (the app's lifespan). A change
made in this process (CLI, admin page) is applied at once; one made elsewhere within the
refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .tables import ModelTier, OrgAccess

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["OPEN", "VERIFIED", "AccessState", "OrgFacts"]

log = logging.getLogger("sovhub.access")

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


class AccessState:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._tiers: dict[str, str] = {}
        self._orgs: dict[int, OrgFacts] = {}
        self._loaded_at: float | None = None
        self._background = False

    def load(self) -> None:
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
        self._tiers, self._orgs = tiers, orgs
        self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        # Without the background task (CLI, tests without lifespan) reload lazily when stale.
        stale = self._loaded_at is None or (
            not self._background and time.monotonic() - self._loaded_at > self.hub.settings.access.state_refresh_s
        )
        if stale:
            self.load()

    def tier(self, model: str) -> str:
        self._fresh()
        return self._tiers.get(model, OPEN)

    def org(self, org_id: int | None) -> OrgFacts:
        self._fresh()
        if org_id is None:
            return OrgFacts()
        return self._orgs.get(org_id, OrgFacts())

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Reload in the background for the app's lifetime."""
        await asyncio.to_thread(self.load)
        self._background = True
        task = asyncio.create_task(self._loop(), name="sovhub-access-state")
        try:
            yield
        finally:
            self._background = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        interval = self.hub.settings.access.state_refresh_s
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.load)
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot if the DB blips
                log.warning("access state reload failed, keeping the last one: %s", exc)
