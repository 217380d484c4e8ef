"""Facts from the database kept in memory for the hot path, reloaded in the background.

A request must not wait for the database, so a replica keeps a snapshot of what admission reads
(tiers, verified organizations, quotas, credit grants, prices) and reloads it every
``access.state_refresh_s`` seconds for the app's lifetime (:meth:`Snapshot.refreshing`, entered
by a lifespan). Without that task (the CLI, tests without a lifespan) it reloads lazily when it
is older than the interval. A reload that fails keeps the last snapshot serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Snapshot"]

log = logging.getLogger("sovhub.snapshot")


class Snapshot(ABC):
    """Subclasses read the database in :meth:`read` and call :meth:`fresh` before each use."""

    #: What the log and the background task call it ("access state").
    label: str

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._loaded_at: float | None = None
        self._background = False

    @abstractmethod
    def read(self) -> None:
        """Read the facts from the database and replace the held ones (one consistent swap)."""

    def load(self) -> None:
        self.read()
        self._loaded_at = time.monotonic()

    def fresh(self) -> None:
        """Load now if never loaded, or if stale while no background task keeps it fresh."""
        stale = self._loaded_at is None or (
            not self._background and time.monotonic() - self._loaded_at > self.hub.settings.access.state_refresh_s
        )
        if stale:
            self.load()

    @contextlib.asynccontextmanager
    async def refreshing(self) -> AsyncIterator[None]:
        """Load, then reload in the background until the block ends."""
        await asyncio.to_thread(self.load)
        self._background = True
        task = asyncio.create_task(self._loop(), name=f"sovhub-{self.label.replace(' ', '-')}")
        try:
            yield
        finally:
            self._background = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.hub.settings.access.state_refresh_s)
            try:
                await asyncio.to_thread(self.load)
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot if the DB blips
                log.warning("%s reload failed, keeping the last one: %s", self.label, exc)
