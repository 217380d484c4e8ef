"""The double-entry ledger: accounts, immutable transfers, two-phase spending, verification.

Modelled on TigerBeetle's: every transfer moves a whole number of micro-credits from one
account to another and is identified once (its ``id``; applying it again does nothing);
a *pending* transfer holds an amount on both accounts until it is *posted* (all or part of it;
the rest is released), *voided* or *expired* (its ``timeout_at`` passed), each at most once.
An account marked ``no_overdraft`` can never hold more debits (posted and pending) than posted
credits: the update that would do it matches no row, and a CHECK constraint backs it up.

    ledger = hub.services.get(Ledger)
    ledger.apply([Entry("fund-1", "posted", debit=partner, credit=pool, amount=5_000_000, code="funding")])

Each batch is one database transaction; account totals change by one UPDATE per account,
in account order (so concurrent batches cannot deadlock). A batch an account refuses is
applied again entry by entry, so one refused entry does not hold back the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import SovhubError
from ..store.base import utcnow
from ..store.db import Database
from .amounts import split_by_shares
from .tables import CreditAccount, CreditGrant, CreditPartnerUsage, CreditTransfer, ProgrammePartner

__all__ = ["Applied", "Entry", "Ledger", "LedgerRefused", "Problem"]

Kind = Literal["posted", "pending", "post", "void", "expire"]
_RESOLVING = ("post", "void", "expire")
_CHUNK = 500


class LedgerRefused(SovhubError):
    """A transfer the ledger cannot apply: an overdraft, an unknown or already resolved pending."""

    status = 409
    type = "invalid_request_error"
    code = "ledger_refused"


@dataclass(frozen=True, slots=True)
class Entry:
    """One transfer to apply. ``debit``/``credit`` are account ids (not needed to resolve a pending)."""

    id: str
    kind: Kind
    debit: int = 0
    credit: int = 0
    amount: int | None = None
    pending_id: str | None = None
    timeout_at: datetime | None = None
    code: str = "usage"
    org_id: int | None = None
    request_id: str | None = None
    model: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ts: datetime | None = None


@dataclass(slots=True)
class Applied:
    applied: int = 0
    duplicates: int = 0
    refused: list[tuple[Entry, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Problem:
    account_id: int | None
    what: str

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.what}" if self.account_id is not None else self.what


class _Overdraft(Exception):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} would be overdrawn")
        self.account_id = account_id


class _Bad(Exception):
    pass


class Ledger:
    """The book of record, in the hub's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._accounts: dict[tuple[str, int], int] = {}
        self._shares: dict[int, list[tuple[int, int]]] = {}
        self._grant_programme: dict[int, int] = {}
        # SQLite has one writer; serialising here spares its busy-retry (and its snapshot errors).
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if db.is_sqlite else contextlib.nullcontext()
        )

    def writing(self) -> contextlib.AbstractContextManager[Any]:
        """Hold around a whole unit of work that reads then writes the ledger (SQLite: one at a time)."""
        return self._lock

    # --- accounts -------------------------------------------------------------------------

    def account(self, s: Session, kind: str, ref_id: int, name: str, *, no_overdraft: bool) -> int:
        """The id of the (kind, ref) account, opened if new."""
        key = (kind, ref_id)
        cached = self._accounts.get(key)
        if cached is not None:
            return cached
        found = s.scalar(select(CreditAccount.id).where(CreditAccount.kind == kind, CreditAccount.ref_id == ref_id))
        if found is None:
            row = CreditAccount(kind=kind, ref_id=ref_id, name=name, no_overdraft=no_overdraft)
            s.add(row)
            s.flush()
            found = row.id
        self._accounts[key] = int(found)
        return int(found)

    def account_id(self, kind: str, ref_id: int) -> int | None:
        key = (kind, ref_id)
        if key not in self._accounts:
            with self.db.session() as s:
                found = s.scalar(
                    select(CreditAccount.id).where(CreditAccount.kind == kind, CreditAccount.ref_id == ref_id)
                )
            if found is None:
                return None
            self._accounts[key] = int(found)
        return self._accounts[key]

    def balances(self, account_ids: Iterable[int]) -> dict[int, CreditAccount]:
        ids = list(account_ids)
        with self.db.session() as s:
            return {a.id: a for a in s.scalars(select(CreditAccount).where(CreditAccount.id.in_(ids)))}

    @staticmethod
    def available(account: CreditAccount) -> int:
        return account.credits_posted - account.debits_posted - account.debits_pending

    # --- applying transfers ---------------------------------------------------------------

    def apply(self, entries: Sequence[Entry], *, session: Session | None = None, strict: bool = False) -> Applied:
        """Apply `entries` in order; duplicates (a known id) are skipped, refusals reported.

        With ``strict`` a refusal raises :class:`LedgerRefused` and nothing of the batch is kept.
        """
        with self._lock:
            if session is not None:
                return self._apply_in(session, entries, strict)
            with self.db.session() as s:
                return self._apply_in(s, entries, strict)

    def _apply_in(self, s: Session, entries: Sequence[Entry], strict: bool) -> Applied:
        try:
            with s.begin_nested():
                return self._apply_batch(s, entries)
        except (_Overdraft, _Bad, IntegrityError) as exc:
            if strict:
                raise LedgerRefused(_reason(exc)) from None
        # Entry by entry: each in its own savepoint, so the others still apply.
        out = Applied()
        for entry in entries:
            try:
                with s.begin_nested():
                    one = self._apply_batch(s, [entry])
                out.applied += one.applied
                out.duplicates += one.duplicates
            except (_Overdraft, _Bad, IntegrityError) as exc:
                out.refused.append((entry, _reason(exc)))
        return out

    def _apply_batch(self, s: Session, entries: Sequence[Entry]) -> Applied:
        out = Applied()
        ids = [e.id for e in entries]
        known = set(_in_chunks(s, CreditTransfer.id, CreditTransfer.id, ids))
        wanted = [e.pending_id for e in entries if e.kind in _RESOLVING and e.pending_id]
        pendings: dict[str, tuple[int, int, int]] = {
            row.id: (row.debit_account_id, row.credit_account_id, row.amount)
            for chunk in _chunks(wanted)
            for row in s.execute(
                select(CreditTransfer.id, CreditTransfer.debit_account_id, CreditTransfer.credit_account_id,
                       CreditTransfer.amount).where(CreditTransfer.id.in_(chunk), CreditTransfer.kind == "pending")
            )
        }
        resolved = set(_in_chunks(s, CreditTransfer.pending_id, CreditTransfer.pending_id, wanted))
        deltas: dict[int, list[int]] = {}
        rows: list[dict[str, Any]] = []
        partner_usage: dict[tuple[int, int], int] = {}
        now = utcnow()

        def move(account: int, which: int, amount: int) -> None:
            deltas.setdefault(account, [0, 0, 0, 0])[which] += amount

        for e in entries:
            if e.id in known:
                out.duplicates += 1
                continue
            known.add(e.id)
            debit, credit, amount = e.debit, e.credit, e.amount or 0
            if amount < 0:
                raise _Bad(f"transfer {e.id}: negative amount")
            if e.kind in ("posted", "pending"):
                if not debit or not credit or debit == credit:
                    raise _Bad(f"transfer {e.id}: needs two different accounts")
                base = 0 if e.kind == "posted" else 2
                move(debit, base, amount)
                move(credit, base + 1, amount)
                if e.kind == "pending":
                    pendings[e.id] = (debit, credit, amount)
            else:
                if e.pending_id is None or e.pending_id not in pendings:
                    raise _Bad(f"transfer {e.id}: no pending transfer {e.pending_id}")
                if e.pending_id in resolved:
                    raise _Bad(f"transfer {e.id}: pending transfer {e.pending_id} is already resolved")
                resolved.add(e.pending_id)
                debit, credit, held = pendings[e.pending_id]
                posted = (held if e.amount is None else amount) if e.kind == "post" else 0
                if posted > held:
                    raise _Bad(f"transfer {e.id}: posts {posted}, more than the {held} pending")
                move(debit, 2, -held)
                move(credit, 3, -held)
                move(debit, 0, posted)
                move(credit, 1, posted)
                amount = posted if e.kind == "post" else held
            split = None
            if e.code == "usage" and e.kind in ("posted", "post") and amount > 0:
                programme, parts = self._split(s, debit, amount)
                split = {str(p): part for p, part in parts.items()}
                for partner, part in parts.items():
                    partner_usage[(programme, partner)] = partner_usage.get((programme, partner), 0) + part
            rows.append({
                "id": e.id, "kind": e.kind, "debit_account_id": debit, "credit_account_id": credit, "split": split,
                "amount": amount, "pending_id": e.pending_id if e.kind in _RESOLVING else None,
                "timeout_at": e.timeout_at, "code": e.code, "org_id": e.org_id, "request_id": e.request_id,
                "model": e.model, "details": e.details, "ts": e.ts or now,
            })
            out.applied += 1
        if rows:
            _insert(s, _table(CreditTransfer), rows)
        table = _table(CreditAccount)
        c = table.c
        for account in sorted(deltas):
            dp, cp, dpend, cpend = deltas[account]
            result = s.execute(
                update(table)
                .where(c.id == account)
                .where(~c.no_overdraft | (c.debits_posted + dp + c.debits_pending + dpend <= c.credits_posted + cp))
                .values(debits_posted=c.debits_posted + dp, credits_posted=c.credits_posted + cp,
                        debits_pending=c.debits_pending + dpend, credits_pending=c.credits_pending + cpend)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise _Overdraft(account)
        usage_table = _table(CreditPartnerUsage)
        u = usage_table.c
        for (programme, partner), part in sorted(partner_usage.items()):
            done = s.execute(update(usage_table).where(u.programme_id == programme, u.partner_id == partner)
                             .values(amount=u.amount + part))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                s.execute(insert(usage_table).values(programme_id=programme, partner_id=partner, amount=part))
        return out

    def _split(self, s: Session, grant_account: int, amount: int) -> tuple[int, dict[int, int]]:
        """(programme, parts): a usage debit of a grant divided across its programme's partners by share."""
        shares = self._shares.get(grant_account)
        if shares is None:
            account = s.get(CreditAccount, grant_account)
            programme_id = None
            if account is not None and account.kind == "grant":
                programme_id = s.scalar(select(CreditGrant.programme_id).where(CreditGrant.id == account.ref_id))
            rows = [] if programme_id is None else s.execute(
                select(ProgrammePartner.partner_id, ProgrammePartner.share)
                .where(ProgrammePartner.programme_id == programme_id).order_by(ProgrammePartner.partner_id)
            ).all()
            shares = self._shares[grant_account] = [(int(p), int(sh)) for p, sh in rows]
            self._grant_programme[grant_account] = int(programme_id or 0)
        return self._grant_programme[grant_account], split_by_shares(amount, shares) if shares else {}

    def expire_pending(self, now: datetime | None = None, *, limit: int = 10_000) -> int:
        """Expire every pending transfer whose timeout has passed (releases its hold); returns how many."""
        now = now or utcnow()
        with self.db.session() as s:
            resolving = select(CreditTransfer.pending_id).where(CreditTransfer.pending_id.is_not(None))
            due = s.scalars(
                select(CreditTransfer.id).where(
                    CreditTransfer.kind == "pending", CreditTransfer.timeout_at <= now,
                    CreditTransfer.id.not_in(resolving),
                ).limit(limit)
            ).all()
            if not due:
                return 0
            result = self._apply_in(s, [Entry(f"{tid}:expire", "expire", pending_id=tid, code="usage",
                                              details={"reason": "timeout"}) for tid in due], False)
            return result.applied

    # --- verification ---------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Recompute every account from its transfers; every mismatch is a problem (none: all well)."""
        problems: list[Problem] = []
        t = CreditTransfer
        with self.db.session() as s:
            accounts = {a.id: a for a in s.scalars(select(CreditAccount))}
            sums: dict[int, list[int]] = {i: [0, 0, 0, 0] for i in accounts}
            posted = t.kind.in_(("posted", "post"))
            for side, column in ((0, t.debit_account_id), (1, t.credit_account_id)):
                for account, total in s.execute(
                    select(column, func.coalesce(func.sum(t.amount), 0)).where(posted).group_by(column)
                ):
                    sums.setdefault(account, [0, 0, 0, 0])[side] = int(total)
                resolving = select(t.pending_id).where(t.pending_id.is_not(None))
                for account, total in s.execute(
                    select(column, func.coalesce(func.sum(t.amount), 0))
                    .where(t.kind == "pending", t.id.not_in(resolving)).group_by(column)
                ):
                    sums.setdefault(account, [0, 0, 0, 0])[side + 2] = int(total)
            names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
            for account_id, expected in sorted(sums.items()):
                row = accounts.get(account_id)
                if row is None:
                    problems.append(Problem(account_id, "transfers name an account that does not exist"))
                    continue
                for name, value in zip(names, expected, strict=True):
                    if getattr(row, name) != value:
                        problems.append(Problem(account_id, f"{name} is {getattr(row, name)}, its transfers sum "
                                                            f"to {value}"))
                if row.no_overdraft and row.debits_posted + row.debits_pending > row.credits_posted:
                    problems.append(Problem(account_id, "overdrawn"))
            net = sum(a.credits_posted - a.debits_posted for a in accounts.values())
            net_pending = sum(a.credits_pending - a.debits_pending for a in accounts.values())
            if net or net_pending:
                problems.append(Problem(None, f"accounts do not sum to zero (posted {net}, pending {net_pending})"))
            p = CreditTransfer.__table__.alias("p")
            for tid, amount, held in s.execute(
                select(t.id, t.amount, p.c.amount).join(p, t.pending_id == p.c.id).where(t.kind == "post")
            ):
                if amount > held:
                    problems.append(Problem(None, f"transfer {tid} posts {amount}, more than its pending {held}"))
            # Every usage debit's parts sum to it, and each partner's running total to its parts.
            programme_of = dict(s.execute(
                select(CreditAccount.id, CreditGrant.programme_id)
                .join(CreditGrant, CreditGrant.id == CreditAccount.ref_id).where(CreditAccount.kind == "grant")
            ).all())
            totals: dict[tuple[int, int], int] = {}
            for tid, amount, split, debit in s.execute(
                select(t.id, t.amount, t.split, t.debit_account_id)
                .where(t.code == "usage", posted, t.amount > 0).execution_options(yield_per=10_000)
            ):
                parts = {int(k): int(v) for k, v in (split or {}).items()}
                if sum(parts.values()) != amount:
                    problems.append(Problem(None, f"transfer {tid}: partners' parts sum to {sum(parts.values())}, "
                                                  f"not {amount}"))
                for partner, part in parts.items():
                    key = (int(programme_of.get(debit, 0)), partner)
                    totals[key] = totals.get(key, 0) + part
            recorded = {(int(p), int(q)): int(a) for p, q, a in s.execute(
                select(CreditPartnerUsage.programme_id, CreditPartnerUsage.partner_id, CreditPartnerUsage.amount))}
            for key in sorted(set(totals) | set(recorded)):
                if totals.get(key, 0) != recorded.get(key, 0):
                    problems.append(Problem(None, f"programme {key[0]} partner {key[1]}: usage total is "
                                                  f"{recorded.get(key, 0)}, its parts sum to {totals.get(key, 0)}"))
        return problems


def _insert(s: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    # A Core executemany: psycopg pipelines the rows (measured faster here than multi-row VALUES
    # or RETURNING batches); the ORM's insert would fetch each new primary key one by one.
    s.execute(insert(table), rows)


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IntegrityError):
        return "conflicts with a transfer already applied"
    return str(exc)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _in_chunks(s: Session, column: Any, match: Any, values: Sequence[Any]) -> Iterator[Any]:
    for chunk in _chunks(values):
        yield from s.scalars(select(column).where(match.in_(chunk)))
