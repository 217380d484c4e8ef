"""Usage metering without a database write on the request's hot path.

Requests append a record to an in-memory buffer (O(1), no I/O); a background task writes the
buffer in batches every `usage_flush_interval_s`, and `close()` flushes the rest on graceful
shutdown. A failed write keeps the records for the next try rather than dropping them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from .store.base import utcnow
from .store.tables import UsageRecord

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Meter", "Usage"]

log = logging.getLogger("sovhub.metering")
_MAX_BUFFER = 1_000_000


@dataclass(slots=True)
class Usage:
    request_id: str
    endpoint: str
    model: str
    org_id: int | None
    key_id: int | None
    user_id: int | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    status: int = 200
    ts: datetime = field(default_factory=utcnow)


class Meter:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._buffer: deque[Usage] = deque(maxlen=_MAX_BUFFER)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.written = 0

    def record(self, usage: Usage) -> None:
        self._buffer.append(usage)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sovhub-meter")

    async def _run(self) -> None:
        interval = self.hub.settings.usage_flush_interval_s
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except TimeoutError:
                pass
            await self.flush()

    async def flush(self) -> int:
        total = 0
        batch_size = self.hub.settings.usage_flush_batch
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(batch_size, len(self._buffer)))]
            try:
                await asyncio.to_thread(self._write, batch)
            except SQLAlchemyError as exc:
                log.error("usage write failed, will retry: %s", exc)
                self._buffer.extendleft(reversed(batch))
                break
            total += len(batch)
        self.written += total
        return total

    def _write(self, batch: list[Usage]) -> None:
        with self.hub.db.session() as s:
            s.execute(insert(UsageRecord), [asdict(u) for u in batch])

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self.flush()
