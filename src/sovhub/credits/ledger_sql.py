"""The ledger's set statements: a batch reads and writes in a handful of round trips, whatever its size.

PostgreSQL gets each list as one array parameter (``= ANY(...)``, ``unnest(...)``): one COPY
for all of a batch's transfers, one UPDATE ... FROM for all its accounts, one upsert for the
partners' totals. SQLite, in the process, takes its write lock first and runs the same steps with
IN lists and executemany (it has no round trips to save).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import psycopg
from sqlalchemy import ARRAY, Integer, String, Table, any_, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .ledger_book import COLUMNS, Balance, Pending, Stored
from .tables import CreditAccount, CreditPartnerUsage, CreditTransfer

__all__ = ["Conflict", "TransferWriter", "add_partner_usage", "lock_accounts", "read_known", "read_pendings",
           "take_write_lock", "update_accounts"]

_CHUNK = 500
_T = CreditTransfer
_A = CreditAccount


class Conflict(Exception):
    """A row a concurrent transaction wrote first (a transfer id, a resolved pending): read again and retry."""


def _pg(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _among(s: Session, column: Any, values: Collection[Any], kind: Any) -> Iterator[Any]:
    """`column` is one of `values`: one array parameter on PostgreSQL, IN lists of at most 500 elsewhere."""
    items = list(values)
    if _pg(s):
        yield column == any_(bindparam(None, items, type_=ARRAY(kind)))
        return
    for i in range(0, len(items), _CHUNK):
        yield column.in_(items[i : i + _CHUNK])


def take_write_lock(s: Session) -> None:
    """SQLite: hold the database's write lock from here to the commit (a write that matches no row takes it).

    Reading first and writing later could otherwise fail once another connection has written.
    PostgreSQL locks the batch's account rows instead (:func:`lock_accounts`).
    """
    if not _pg(s):
        s.execute(update(_A).where(_A.id == -1).values(name=_A.name))


def read_pendings(s: Session, ids: Collection[str]) -> dict[str, Pending]:
    """The pending transfers named (immutable rows: read before any lock is taken)."""
    out: dict[str, Pending] = {}
    if not ids:
        return out
    for clause in _among(s, _T.id, ids, String(100)):
        for tid, debit, credit, amount, timeout_at in s.execute(
            select(_T.id, _T.debit_account_id, _T.credit_account_id, _T.amount, _T.timeout_at)
            .where(clause, _T.kind == "pending")
        ):
            out[tid] = Pending(int(debit), int(credit), int(amount), timeout_at)
    return out


def lock_accounts(s: Session, ids: Collection[int]) -> dict[int, Balance]:
    """The accounts' totals, their rows locked until the transaction ends (in id order: no deadlock)."""
    out: dict[int, Balance] = {}
    if not ids:
        return out
    for clause in _among(s, _A.id, sorted(ids), Integer()):
        for aid, no_overdraft, dp, cp, dpend, cpend in s.execute(
            select(_A.id, _A.no_overdraft, _A.debits_posted, _A.credits_posted, _A.debits_pending,
                   _A.credits_pending).where(clause).order_by(_A.id).with_for_update()
        ):
            out[int(aid)] = Balance(bool(no_overdraft), [int(dp), int(cp), int(dpend), int(cpend)])
    return out


def read_known(s: Session, ids: Collection[str], pending_ids: Collection[str]) -> tuple[dict[str, Stored], set[str]]:
    """(the transfers among `ids` already applied, the pendings among `pending_ids` already resolved).

    Read after :func:`lock_accounts`: a concurrent batch on the same accounts has committed by then.
    """
    known: dict[str, Stored] = {}
    resolved: set[str] = set()
    cols = (_T.id, _T.kind, _T.debit_account_id, _T.credit_account_id, _T.amount, _T.pending_id)
    if _pg(s) and ids:
        clause = next(_among(s, _T.id, ids, String(100)))
        if pending_ids:
            clause = clause | next(_among(s, _T.pending_id, pending_ids, String(100)))
        rows = list(s.execute(select(*cols).where(clause)))
    else:
        rows = [r for c in _among(s, _T.id, ids, String(100)) for r in s.execute(select(*cols).where(c))]
        rows += [r for c in _among(s, _T.pending_id, pending_ids, String(100))
                 for r in s.execute(select(*cols).where(c))]
    wanted = set(ids)
    for tid, kind, debit, credit, amount, pending_id in rows:
        if tid in wanted:
            known[tid] = Stored(kind, int(debit), int(credit), int(amount), pending_id)
        if pending_id is not None:
            resolved.add(pending_id)
    return known, resolved


_PG_COPY = f"COPY {_T.__tablename__} ({', '.join(COLUMNS)}) FROM STDIN"


class TransferWriter:
    """Inserts a batch's rows (in :data:`COLUMNS` order) as they are decided; ``written`` counts them.

    PostgreSQL: one COPY for the whole batch (the fastest way in: measured about 3x an INSERT of
    unnest arrays here), fed while the batch is still being checked, so the server stores rows on
    its own core meanwhile; no other statement may run on the connection until the block ends. A
    row whose id (or resolved pending) a concurrent batch wrote first raises :class:`Conflict`:
    the caller rolls back, reads again and retries. SQLite: one executemany at the end.
    """

    def __init__(self, s: Session) -> None:
        self.s = s
        self.written = 0
        self._pending: list[tuple[Any, ...]] = []
        self._copy: Any = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> TransferWriter:
        return self

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if not _pg(self.s):
            self._pending.extend(rows)
            return
        try:
            if self._copy is None:
                raw = self.s.connection().connection.driver_connection
                assert raw is not None
                cur = self._stack.enter_context(raw.cursor())
                self._copy = self._stack.enter_context(cur.copy(_PG_COPY))
            for row in rows:
                self._copy.write_row(row)
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(str(exc)) from exc
        self.written += len(rows)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if not self._stack.__exit__(kind, exc, tb) and kind is None and self._pending:
                # The driver's own executemany with each column's bind processing applied once per
                # value: an ORM/Core insert of dicts costs several times more per row, on the thread
                # that shares the interpreter lock with the event loop.
                processors = _sqlite_processors(self.s)
                rows = [tuple(v if f is None or v is None else f(v) for f, v in zip(processors, row, strict=True))
                        for row in self._pending]
                self.s.connection().exec_driver_sql(_SQLITE_INSERT, rows)
                self.written += len(self._pending)
        except psycopg.errors.UniqueViolation as err:
            raise Conflict(str(err)) from err


_SQLITE_INSERT = f"INSERT INTO {_T.__tablename__} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _sqlite_processors(s: Session) -> list[Any]:
    """Per column of :data:`COLUMNS`, what SQLAlchemy would do to a value before the driver sees it.

    ``details`` and ``split`` are JSON text already: inserted as they are, not encoded again.
    """
    dialect = s.get_bind().dialect
    table = _table(_T)
    return [None if c in ("details", "split") else table.c[c].type.bind_processor(dialect) for c in COLUMNS]


_PG_UPDATE = text(
    f"UPDATE {_A.__tablename__} AS a SET debits_posted = a.debits_posted + v.dp, "
    "credits_posted = a.credits_posted + v.cp, debits_pending = a.debits_pending + v.dpend, "
    "credits_pending = a.credits_pending + v.cpend "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:dp AS bigint[]), CAST(:cp AS bigint[]), CAST(:dpend AS bigint[]), "
    "CAST(:cpend AS bigint[])) AS v(id, dp, cp, dpend, cpend) "
    "WHERE a.id = v.id AND (NOT a.no_overdraft OR "
    "a.debits_posted + v.dp + a.debits_pending + v.dpend <= a.credits_posted + v.cp)"
)


def update_accounts(s: Session, deltas: dict[int, list[int]]) -> int:
    """Add each account's deltas to its totals; returns how many accounts were updated.

    The overdraft condition is in the statement too (and a CHECK constraint below it): if the
    lock were ever not held, an account that would go below zero is not updated, and the caller,
    finding fewer rows than accounts, writes nothing.
    """
    if not deltas:
        return 0
    ids = sorted(deltas)
    if _pg(s):
        columns = list(zip(*(deltas[i] for i in ids), strict=True))
        result = s.execute(_PG_UPDATE, {"ids": ids, "dp": list(columns[0]), "cp": list(columns[1]),
                                        "dpend": list(columns[2]), "cpend": list(columns[3])})
        return int(result.rowcount)  # type: ignore[attr-defined]
    table = _table(_A)
    c = table.c
    done = 0
    for account in ids:
        dp, cp, dpend, cpend = deltas[account]
        result = s.execute(
            update(table).where(c.id == account)
            .where(~c.no_overdraft | (c.debits_posted + dp + c.debits_pending + dpend <= c.credits_posted + cp))
            .values(debits_posted=c.debits_posted + dp, credits_posted=c.credits_posted + cp,
                    debits_pending=c.debits_pending + dpend, credits_pending=c.credits_pending + cpend)
        )
        done += int(result.rowcount)  # type: ignore[attr-defined]
    return done


def add_partner_usage(s: Session, usage: dict[tuple[int, int], int]) -> None:
    """Add to each (programme, partner) running total, creating it if new: one upsert."""
    rows = [{"programme_id": p, "partner_id": q, "amount": a} for (p, q), a in sorted(usage.items()) if a]
    if not rows:
        return
    table = _table(CreditPartnerUsage)
    stmt = (postgresql.insert(table) if _pg(s) else sqlite.insert(table)).values(rows)
    s.execute(stmt.on_conflict_do_update(index_elements=[table.c.programme_id, table.c.partner_id],
                                         set_={"amount": table.c.amount + stmt.excluded.amount}))

