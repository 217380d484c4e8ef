"""Copying the live store's journal into the ledger, in batches, exactly once.

Every replica runs the writer; they take turns on one row (``credit_journal_cursor``, locked
FOR UPDATE in the transaction that writes the batch), so each journal entry is written once
and in order. Should two ever write the same entry, the transfer ids (derived from the request's
admission ticket) make the second a duplicate the ledger skips. Entries are trimmed from Redis
only after the transaction that holds them committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select, update

from ..batching import writer_executor
from ..store.base import utcnow
from .ledger import Entry, Ledger
from .live import JournalEntry, LiveStore
from .tables import CreditGrant, CreditJournalCursor, CreditProgramme

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..hub import Hub

__all__ = ["JournalWriter", "entries_of"]

log = logging.getLogger("sovhub.credits.journal")

#: A pending transfer copied from the journal times out in the ledger this long after its hold's deadline;
#: the journal resolves it long before (the hold's own expiry posts it), so this only catches a lost journal.
LEDGER_GRACE = timedelta(days=1)


def _position(pos: str) -> tuple[int, int]:
    ms, _, seq = pos.partition("-")
    return int(ms), int(seq or 0)


class JournalWriter:
    def __init__(self, hub: Hub, ledger: Ledger, live: LiveStore, *, cursor: str | None) -> None:
        self.hub = hub
        self.ledger = ledger
        self.live = live
        #: The cursor row's name (a shared journal), or None: the journal is this process's own.
        self.cursor = cursor
        self._accounts: dict[int, tuple[int, int, int]] = {}
        self.refused = 0
        self.written = 0
        # One batch at a time per event loop (the writer may serve one app after another, as tests do).
        self._busy: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    async def run_once(self) -> int:
        """Write the next batch of the journal into the ledger; returns how many entries it held."""
        busy = self._busy.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with busy:
            return await self._run_once()

    async def _run_once(self) -> int:
        after = await anyio.to_thread.run_sync(self._read_cursor) if self.cursor else None
        batch = await self.live.read(after, self.hub.settings.credits.journal_batch)
        if not batch:
            return 0
        # On the batch writers' thread, after the usage rows (SQLite has one writer).
        last = await asyncio.get_running_loop().run_in_executor(writer_executor(), self._write, batch)
        await self.live.trim(last)
        return len(batch)

    async def drain(self) -> int:
        total = 0
        while n := await self.run_once():
            total += n
        return total

    def _read_cursor(self) -> str | None:
        assert self.cursor is not None
        with self.hub.db.session() as s:
            row = s.get(CreditJournalCursor, self.cursor)
            return row.position if row is not None else None

    def _write(self, batch: list[JournalEntry]) -> str:
        with self.ledger.writing(), self.hub.db.session() as s:
            if self.hub.db.is_sqlite:
                # Take SQLite's write lock first (waiting for it as long as it takes): a transaction
                # that read first could not write once another connection has.
                s.execute(update(CreditJournalCursor).where(CreditJournalCursor.name == "").values(name=""))
            row: CreditJournalCursor | None = None
            if self.cursor is not None:
                row = s.get(CreditJournalCursor, self.cursor, with_for_update=True)
                if row is None:
                    row = CreditJournalCursor(name=self.cursor, position="0-0")
                    s.add(row)
                    s.flush()
                done = _position(row.position)
                batch = [(p, f) for p, f in batch if _position(p) > done]
                if not batch:
                    return row.position
            entries = [e for pos, fields in batch for e in entries_of(fields, pos, lambda g: self._grant(s, g))]
            result = self.ledger.apply(entries, session=s)
            for entry, reason in result.refused:
                # The live store admitted it, the ledger cannot: an operator must look (docs/credits.md).
                log.error("ledger refused journal entry %s: %s", entry.id, reason)
            self.refused += len(result.refused)
            self.written += result.applied
            last = batch[-1][0]
            if row is not None:
                row.position, row.updated_at = last, utcnow()
        return last

    def _grant(self, s: Session, grant_id: int) -> tuple[int, int, int]:
        """(grant, programme usage, programme pool) account ids of a grant."""
        found = self._accounts.get(grant_id)
        if found is None:
            grant = s.get(CreditGrant, grant_id)
            if grant is None:
                raise LookupError(f"journal names grant {grant_id}, which does not exist")
            programme = s.scalar(select(CreditProgramme).where(CreditProgramme.id == grant.programme_id))
            assert programme is not None
            found = (
                self.ledger.account(s, "grant", grant_id, f"grant {grant_id}", no_overdraft=True),
                self.ledger.account(s, "usage", programme.id, f"programme {programme.name}: usage",
                                    no_overdraft=False),
                self.ledger.account(s, "programme", programme.id, f"programme {programme.name}: pool",
                                    no_overdraft=True),
            )
            self._accounts[grant_id] = found
        return found


def entries_of(fields: dict[str, str], pos: str, accounts: Any) -> list[Entry]:
    """The ledger transfers one journal entry stands for (ids derived from the admission ticket)."""
    op = fields.get("op")
    if op == "return":
        grant, amount = int(fields["grant"]), int(fields["amount"])
        account, _, pool = accounts(grant)
        return [Entry(f"return:{grant}:{pos}", "posted", debit=account, credit=pool, amount=amount, code="return",
                      details={"reason": "grant expired"})]
    meta: dict[str, Any] = json.loads(fields.get("meta") or "{}")
    tid = fields["tid"]
    common: dict[str, Any] = {"code": "usage", "org_id": meta.get("org"), "request_id": meta.get("rid"),
                              "model": meta.get("model")}
    out: list[Entry] = []
    if op == "pending":
        deadline = datetime.fromtimestamp(int(fields["deadline"]) / 1000, UTC)
        for leg in filter(None, fields["legs"].split(",")):
            grant_s, amount_s = leg.split(":")
            account, usage, _ = accounts(int(grant_s))
            out.append(Entry(f"{tid}.{grant_s}", "pending", debit=account, credit=usage, amount=int(amount_s),
                             timeout_at=deadline + LEDGER_GRACE,
                             details={"endpoint": meta.get("endpoint"), "key": meta.get("key")},
                             **common))
    elif op == "post":
        details: dict[str, Any] = json.loads(fields.get("details") or "{}")
        if meta.get("key") is not None:
            details["key"] = meta["key"]
        if int(fields.get("unpaid") or 0):
            details["unpaid"] = int(fields["unpaid"])
        for leg in filter(None, fields["legs"].split(",")):
            grant_s, posted_s, _held = leg.split(":")
            posted = int(posted_s)
            out.append(Entry(f"{tid}.{grant_s}.{'post' if posted else 'void'}", "post" if posted else "void",
                             pending_id=f"{tid}.{grant_s}", amount=posted, details=details, **common))
        for leg in filter(None, (fields.get("extra") or "").split(",")):
            grant_s, amount_s = leg.split(":")
            account, usage, _ = accounts(int(grant_s))
            out.append(Entry(f"{tid}.{grant_s}.extra", "posted", debit=account, credit=usage, amount=int(amount_s),
                             details={**details, "beyond_reservation": True}, **common))
    return out
