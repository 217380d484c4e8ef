"""The double-entry ledger: accounts, immutable transfers, two-phase spending, verification.

Modelled on TigerBeetle's: every transfer moves a whole number of micro-credits from one
account to another and is identified once (its ``id``: applying it again with the same content
is a replay that changes nothing, with other content it is refused); a *pending* transfer holds
an amount on both accounts until it is *posted* (all or part of it; the rest is released),
*voided*, or *expired* once its ``timeout_at`` passed (after which it can no longer be posted or
voided), each at most once. An account marked ``no_overdraft`` can never hold more debits (posted
and pending) than posted credits.

    ledger = hub.services.get(Ledger)
    ledger.apply([Entry("fund-1", "posted", debit=partner, credit=pool, amount=5_000_000, code="funding")])

A batch is applied TigerBeetle's way (:mod:`.ledger_book`): its accounts' rows are locked and
read once, every transfer is checked in order against that copy, and the batch is written in a
few set statements (:mod:`.ledger_sql`), so its cost hardly grows with its size. Calls to
:meth:`Ledger.apply` that arrive together from several threads are *group-committed*: one of
them applies all that are waiting in one transaction, each keeping its own result (and its own
all-or-nothing, with ``strict``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import SovhubError
from ..store.base import utcnow
from ..store.db import Database
from . import ledger_sql as sql
from .amounts import split_by_shares
from .ledger_book import RESOLVING, Book, Entry, Kind, Refusal
from .tables import CreditAccount, CreditGrant, CreditPartnerUsage, CreditTransfer, ProgrammePartner

__all__ = ["Applied", "Entry", "Kind", "Ledger", "LedgerRefused", "Problem"]

#: A batch that met a concurrent writer's rows (an id written meanwhile) is read again and retried.
_RETRIES = 5
#: Rows a batch sends to the database at a time while it checks the rest.
_STREAM = 256
#: The most transfers one group commit takes (the rest wait for the next).
GROUP_MAX = 20_000


class LedgerRefused(SovhubError):
    """A transfer the ledger cannot apply: an overdraft, an unknown or already resolved pending."""

    status = 409
    type = "invalid_request_error"
    code = "ledger_refused"


@dataclass(slots=True)
class Applied:
    """What became of a call's transfers; ``results`` has one per entry, in order."""

    applied: int = 0
    duplicates: int = 0
    refused: list[tuple[Entry, str]] = field(default_factory=list)
    #: "applied", "duplicate" (a replay of a transfer already applied) or "refused".
    results: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Problem:
    account_id: int | None
    what: str

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.what}" if self.account_id is not None else self.what


class _Race(Exception):
    """A concurrent writer got there first (only without the account lock: an id on other accounts)."""


@dataclass(slots=True)
class _Submission:
    entries: Sequence[Entry]
    strict: bool
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    outcome: Applied | BaseException | None = None


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
        self._queue: list[_Submission] = []
        self._queue_lock = threading.Lock()
        self._leading = False
        #: Transactions the group commit ran and the submissions they carried (for the benchmark and tests).
        self.group_commits = 0
        self.group_submissions = 0
        #: Batches read again after a concurrent writer's row got in first.
        self.retries = 0

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
        """Apply `entries` in order; replays (a known id, same content) are skipped, refusals reported.

        With ``strict`` a refusal raises :class:`LedgerRefused` and nothing of `entries` is kept.
        With a `session` they are applied in the caller's transaction; without, in a group commit.
        """
        if session is not None:
            with self._lock:
                outcome = self._apply_in(session, [_Submission(entries, strict)])[0]
            if isinstance(outcome, BaseException):
                raise outcome
            assert outcome is not None
            return outcome
        return self._group_commit(_Submission(entries, strict))

    def _group_commit(self, mine: _Submission) -> Applied:
        # Leader and followers: the first caller to find no batch running runs one with every
        # submission waiting, then hands the lead to the first that arrived meanwhile. Each caller
        # thus leads at most one transaction, and waits for at most the one before its own.
        with self._queue_lock:
            self._queue.append(mine)
            if not self._leading:
                self._leading = mine.lead = True
        if not mine.lead:
            mine.done.wait()
        if mine.lead:
            with self._queue_lock:
                batch: list[_Submission] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0].entries) <= GROUP_MAX):
                    size += len(self._queue[0].entries)
                    batch.append(self._queue.pop(0))
            outcomes: list[Applied | BaseException]
            try:
                with self._lock, self.db.session() as s:
                    outcomes = self._apply_in(s, batch, owned=True)
            except BaseException as exc:  # the transaction failed: every submission in it did
                outcomes = [exc] * len(batch)
            self.group_commits += 1
            self.group_submissions += len(batch)
            with self._queue_lock:
                for sub, outcome in zip(batch, outcomes, strict=True):
                    sub.outcome = outcome
                    if sub is not mine:
                        sub.done.set()
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
        result = mine.outcome
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    def _apply_in(self, s: Session, subs: Sequence[_Submission], now: datetime | None = None, *,
                  owned: bool = False) -> list[Applied | BaseException]:
        """Apply in `s`: in a savepoint of the caller's transaction, or (`owned`) in the session's own."""
        for attempt in range(_RETRIES):
            # First: on SQLite this write opens the transaction, which a SAVEPOINT issued first would
            # not (its RELEASE would then commit the batch on its own, before the caller's end).
            sql.take_write_lock(s)
            try:
                if owned:
                    return self._apply_batch(s, subs, now or utcnow())
                with s.begin_nested():
                    return self._apply_batch(s, subs, now or utcnow())
            except (_Race, sql.Conflict, IntegrityError):
                if attempt == _RETRIES - 1:
                    raise
                self.retries += 1
                if owned:
                    s.rollback()
        raise AssertionError("unreachable")

    def _apply_batch(self, s: Session, subs: Sequence[_Submission], now: datetime) -> list[Applied | BaseException]:
        ids = {e.id for sub in subs for e in sub.entries}
        wanted = {e.pending_id for sub in subs for e in sub.entries if e.kind in RESOLVING and e.pending_id}
        pendings = sql.read_pendings(s, wanted)
        accounts = {a for sub in subs for e in sub.entries if e.kind not in RESOLVING for a in (e.debit, e.credit)}
        accounts.update(a for p in pendings.values() for a in (p.debit, p.credit))
        accounts.discard(0)
        balances = sql.lock_accounts(s, accounts)
        known, resolved = sql.read_known(s, ids, wanted)
        for account in balances:  # every split the batch may need, read before the COPY holds the connection
            if account not in self._shares:
                self._split(s, account, 0)
        book = Book(balances, known, resolved, pendings, lambda account, amount: self._split(s, account, amount), now)
        outcomes: list[Applied | BaseException] = []
        with sql.TransferWriter(s) as writer:
            for sub in subs:
                mark = book.checkpoint()
                # A submission that is not all-or-nothing streams its rows as it goes (the database
                # stores them while the next are checked); an all-or-nothing one once it is decided.
                sent = len(book.rows)
                out = Applied()
                for e in sub.entries:
                    try:
                        if book.apply(e):
                            out.applied += 1
                            out.results.append("applied")
                        else:
                            out.duplicates += 1
                            out.results.append("duplicate")
                    except Refusal as exc:
                        out.refused.append((e, str(exc)))
                        out.results.append("refused")
                    if not sub.strict and len(book.rows) - sent >= _STREAM:
                        writer.write(book.rows[sent:])
                        sent = len(book.rows)
                if sub.strict and out.refused:
                    book.rollback(mark)
                    outcomes.append(LedgerRefused(out.refused[0][1]))
                else:
                    writer.write(book.rows[sent:])
                    outcomes.append(out)
        if writer.written != len(book.rows):
            raise _Race("a transfer id was written by a concurrent batch")
        if sql.update_accounts(s, book.deltas) != len(book.deltas):
            raise _Race("an account changed under the batch")
        sql.add_partner_usage(s, book.partner_usage)
        return outcomes

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
        with self._lock, self.db.session() as s:
            resolving = select(CreditTransfer.pending_id).where(CreditTransfer.pending_id.is_not(None))
            due = s.scalars(
                select(CreditTransfer.id).where(
                    CreditTransfer.kind == "pending", CreditTransfer.timeout_at <= now,
                    CreditTransfer.id.not_in(resolving),
                ).limit(limit)
            ).all()
            if not due:
                return 0
            entries = [Entry(f"{tid}:expire", "expire", pending_id=tid, code="usage", details={"reason": "timeout"})
                       for tid in due]
            outcome = self._apply_in(s, [_Submission(entries, False)], now, owned=True)[0]
            assert isinstance(outcome, Applied)
            return outcome.applied

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

