"""Usage metering without a database write on the request's hot path, and without losing a row to a kill.

Requests append a record to an in-memory buffer (O(1), no I/O) and to this process's journal
(:mod:`sovhub.journal`: one ``write(2)``, a few microseconds, before the answer's last byte); a
background task writes the buffer in batches every `usage_flush_interval_s`, then drops the
journal's sealed segments. `close()` flushes the rest on graceful shutdown; a process killed
before its flush has its journal replayed by the next start on its data dir, idempotently (a
request's row is never written twice). A failed write keeps the records for the next try.
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import shutil
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from .batching import BatchWriter
from .journal import Journal
from .lineheld import current_line
from .store.base import utcnow
from .store.tables import UsageRecord

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Meter", "Usage"]

log = logging.getLogger("sovhub.metering")


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
    #: The backend reported no usage: the tokens were counted by the hub (`Backend.count_tokens`).
    estimated: bool = False
    #: The batch this request ran in; None for interactive requests.
    batch_id: str | None = None
    #: ``<batch>:<line>:<n>`` for a batch line's n-th row: unique, so a line is metered once (lineheld.py).
    batch_line_key: str | None = None
    ts: datetime = field(default_factory=utcnow)
    #: Filled when the record is written (sovhub.energy.accountant), from the interval's measurements.
    energy_wh: float | None = None
    co2e_g: float | None = None
    renewable_share: float | None = None
    energy_method: str | None = None


_FIELDS = tuple(f.name for f in fields(Usage))
_VALUES = operator.attrgetter(*_FIELDS)
# One encoder for every record (json.dumps with separators builds a new one per call): runs per request.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _encode(u: Usage) -> bytes:
    row: dict[str, Any] = dict(zip(_FIELDS, _VALUES(u), strict=True))
    row["ts"] = u.ts.isoformat()
    return _JSON(row).encode() + b"\n"


def _decode(line: bytes) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(line)
    row = {f: row[f] for f in _FIELDS if f in row}
    row["ts"] = datetime.fromisoformat(row["ts"])
    return row


class Meter(BatchWriter[Usage]):
    name = "meter"

    def __init__(self, hub: Hub) -> None:
        super().__init__(interval=hub.settings.usage_flush_interval_s, batch_size=hub.settings.usage_flush_batch)
        self.hub = hub
        self.journal = Journal(Path(hub.settings.data_dir) / hub.settings.server.usage_journal_dir)
        #: Rows a dead process's journal added at start (already in the database ones are skipped).
        self.replayed = 0

    def _insert(self) -> Insert:
        """INSERT that skips a row whose batch line is already metered (the unique batch_line_key)."""
        if self.hub.db.engine.dialect.name == "postgresql":
            return postgresql.insert(UsageRecord).on_conflict_do_nothing()
        return sqlite.insert(UsageRecord).on_conflict_do_nothing()

    def record(self, usage: Usage) -> None:
        line = current_line()
        if line is not None:  # a batch line's attempt: written only if its result is kept
            line.record(usage)
            return
        if self.journal.is_open:
            self.journal.append(_encode(usage))
        self.append(usage)

    def write(self, batch: list[Usage]) -> int:
        from .energy.accountant import EnergyAccountant

        if EnergyAccountant in self.hub.services:
            self.hub.services.get(EnergyAccountant).assign(batch)
        with self.hub.db.session() as s:
            # Plain field reads, not dataclasses.asdict (which deep-copies): this runs for every request.
            s.execute(self._insert(), [{f: getattr(u, f) for f in _FIELDS} for u in batch])
        return len(batch)

    async def start(self) -> None:
        if not self.journal.is_open:
            await asyncio.to_thread(self.journal.open)
            self.replayed += await asyncio.to_thread(self.replay)
        await super().start()

    def replay(self) -> int:
        """Write dead processes' journaled records that are not in the database yet; returns how many."""
        added = 0
        for owner, lines in self.journal.orphans():
            rows = []
            for line in lines:
                try:
                    rows.append(_decode(line))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("usage journal %s: skipping a damaged record: %s", owner, exc)
            added += self._insert_missing(rows)
            shutil.rmtree(owner, ignore_errors=True)
            log.info("usage journal of a stopped process replayed", extra={"journal": str(owner), "rows": len(rows)})
        return added

    def _insert_missing(self, rows: list[dict[str, Any]]) -> int:
        # A request's row is (request_id, endpoint, model): a record whose row reached the database
        # before the kill is not written again.
        added = 0
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            keys = [(r["request_id"], r["endpoint"], r["model"]) for r in chunk]
            with self.hub.db.session() as s:
                present = {tuple(row) for row in s.execute(
                    select(UsageRecord.request_id, UsageRecord.endpoint, UsageRecord.model)
                    .where(tuple_(UsageRecord.request_id, UsageRecord.endpoint, UsageRecord.model).in_(keys))
                )}
                missing = [r for r, k in zip(chunk, keys, strict=True) if k not in present]
                if missing:
                    s.execute(self._insert(), missing)
            added += len(missing)
        return added

    async def _flush(self) -> int:
        sealed = self.journal.rotate() if self.journal.is_open else []
        total = await super()._flush()
        if not self.pending:  # everything journaled before the rotation is in the database now
            self.journal.discard(sealed)
        return total

    async def close(self) -> None:
        await super().close()
        if self.journal.is_open:
            self.journal.close(keep=bool(self.pending))
