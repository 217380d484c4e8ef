"""One batch of transfers validated in memory, against account rows the batch holds locked.

TigerBeetle's way: the balances of every account a batch touches are read once, under a lock
(``SELECT ... FOR UPDATE`` on PostgreSQL, SQLite's write lock), every transfer is checked and
applied in order to that copy, and the batch's rows and totals are then written in a few set
statements. Each transfer gets its own result (applied, an identical replay, or refused and why);
a refused transfer changes nothing, and a submission that must be all-or-nothing is rolled back
to its :meth:`Book.checkpoint` when any of its transfers is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..store.base import as_utc

__all__ = ["RESOLVING", "Balance", "Book", "Entry", "Kind", "Pending", "Refusal", "Stored"]

Kind = Literal["posted", "pending", "post", "void", "expire"]
RESOLVING = ("post", "void", "expire")
# A balance's four totals, TigerBeetle's order.
DP, CP, DPEND, CPEND = 0, 1, 2, 3


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
class Balance:
    no_overdraft: bool
    totals: list[int]


@dataclass(frozen=True, slots=True)
class Pending:
    debit: int
    credit: int
    amount: int
    timeout_at: datetime | None


@dataclass(frozen=True, slots=True)
class Stored:
    """What identifies a transfer already applied: a replay must match it to count as the same."""

    kind: str
    debit: int
    credit: int
    amount: int
    pending_id: str | None


class Refusal(Exception):
    """A transfer the batch refuses; the message says why."""


#: (programme, {partner: part}) of a usage debit of `amount` from a grant's account.
Splitter = Callable[[int, int], tuple[int, dict[int, int]]]

#: The columns of a transfer row, in the order :attr:`Book.rows` holds them.
COLUMNS = ("id", "kind", "debit_account_id", "credit_account_id", "amount", "pending_id", "timeout_at", "code",
           "org_id", "request_id", "model", "details", "split", "ts")


class Book:
    """The batch's working copy: balances, known ids, pendings and what the batch will write."""

    def __init__(self, balances: dict[int, Balance], known: dict[str, Stored], resolved: set[str],
                 pendings: dict[str, Pending], split: Splitter, now: datetime) -> None:
        self.balances = balances
        self.known = known
        self.resolved = resolved
        self.pendings = pendings
        self.split = split
        self.now = now
        #: Per account, the change of its four totals the batch makes.
        self.deltas: dict[int, list[int]] = {}
        #: Rows to insert, as tuples in :data:`COLUMNS` order (``details`` and ``split`` as JSON text).
        self.rows: list[tuple[Any, ...]] = []
        self.partner_usage: dict[tuple[int, int], int] = {}
        self._undo: list[tuple[Any, ...]] = []

    # --- all-or-nothing submissions -------------------------------------------------------

    def checkpoint(self) -> tuple[int, int]:
        return len(self._undo), len(self.rows)

    def rollback(self, mark: tuple[int, int]) -> None:
        undo, rows = mark
        while len(self._undo) > undo:
            what, key, value = self._undo.pop()
            if what == "move":
                account, which = key
                self.balances[account].totals[which] -= value
                self.deltas[account][which] -= value
            elif what == "known":
                del self.known[key]
            elif what == "resolved":
                self.resolved.discard(key)
            elif what == "pending":
                del self.pendings[key]
            else:
                self.partner_usage[key] -= value
        del self.rows[rows:]

    # --- one transfer ---------------------------------------------------------------------

    def apply(self, e: Entry) -> bool:
        """Apply `e`: True if applied, False if it replays a transfer already applied; :class:`Refusal` if refused.

        Every check comes before the first change, so a refused transfer leaves the book as it was.
        """
        stored = self.known.get(e.id)
        if stored is not None:
            if not _same(e, stored):
                raise Refusal(f"transfer {e.id} exists with a different {_difference(e, stored)}")
            return False
        amount = e.amount or 0
        if amount < 0:
            raise Refusal(f"transfer {e.id}: negative amount")
        timeout_at = None if e.timeout_at is None else as_utc(e.timeout_at)
        kind = e.kind
        if kind == "posted" or kind == "pending":
            debit, credit = e.debit, e.credit
            if not debit or not credit or debit == credit:
                raise Refusal(f"transfer {e.id}: needs two different accounts")
            balance = self.balances.get(debit)
            if balance is None or credit not in self.balances:
                raise Refusal(f"transfer {e.id}: no account {credit if balance is not None else debit}")
            t = balance.totals
            if balance.no_overdraft and t[DP] + t[DPEND] + amount > t[CP]:
                raise Refusal(f"transfer {e.id}: account {debit} would be overdrawn")
            base = DP if kind == "posted" else DPEND
            self._move(debit, base, amount)
            self._move(credit, base + 1, amount)
            if kind == "pending":
                self.pendings[e.id] = Pending(debit, credit, amount, timeout_at)
                self._undo.append(("pending", e.id, 0))
            stored = Stored(kind, debit, credit, amount, None)
        elif kind in RESOLVING:
            pending = self.pendings.get(e.pending_id or "")
            if e.pending_id is None or pending is None:
                raise Refusal(f"transfer {e.id}: no pending transfer {e.pending_id}")
            if e.pending_id in self.resolved:
                raise Refusal(f"transfer {e.id}: pending transfer {e.pending_id} is already resolved")
            timed_out = pending.timeout_at is not None and pending.timeout_at <= self.now
            if kind == "expire" and not timed_out:
                raise Refusal(f"transfer {e.id}: pending transfer {e.pending_id} has not timed out")
            if kind != "expire" and timed_out:
                raise Refusal(f"transfer {e.id}: pending transfer {e.pending_id} has expired")
            debit, credit, held = pending.debit, pending.credit, pending.amount
            posted = (held if e.amount is None else amount) if kind == "post" else 0
            if posted > held:
                raise Refusal(f"transfer {e.id}: posts {posted}, more than the {held} pending")
            # Releasing a hold and posting at most as much never overdraws: nothing to check.
            self._move(debit, DPEND, -held)
            self._move(credit, CPEND, -held)
            self._move(debit, DP, posted)
            self._move(credit, CP, posted)
            self.resolved.add(e.pending_id)
            self._undo.append(("resolved", e.pending_id, 0))
            amount = posted if kind == "post" else held
            stored = Stored(kind, debit, credit, amount, e.pending_id)
        else:
            raise Refusal(f"transfer {e.id}: unknown kind {kind!r}")
        split = None
        if e.code == "usage" and amount > 0 and (kind == "posted" or kind == "post"):
            programme, parts = self.split(debit, amount)
            if parts:
                split = json.dumps({str(p): part for p, part in parts.items()})
            usage = self.partner_usage
            for partner, part in parts.items():
                key = (programme, partner)
                usage[key] = usage.get(key, 0) + part
                self._undo.append(("usage", key, part))
        self.known[e.id] = stored
        self._undo.append(("known", e.id, 0))
        self.rows.append((e.id, kind, debit, credit, amount, e.pending_id if kind in RESOLVING else None,
                          timeout_at, e.code, e.org_id, e.request_id, e.model,
                          json.dumps(e.details) if e.details else "{}", split,
                          self.now if e.ts is None else as_utc(e.ts)))
        return True

    def _move(self, account: int, which: int, amount: int) -> None:
        if not amount:
            return
        self.balances[account].totals[which] += amount
        delta = self.deltas.get(account)
        if delta is None:
            delta = self.deltas[account] = [0, 0, 0, 0]
        delta[which] += amount
        self._undo.append(("move", (account, which), amount))


def _same(e: Entry, stored: Stored) -> bool:
    return not _difference(e, stored)


def _difference(e: Entry, stored: Stored) -> str:
    if e.kind != stored.kind:
        return "kind"
    if e.kind in RESOLVING:
        if e.pending_id != stored.pending_id:
            return "pending transfer"
        if e.kind == "post" and e.amount is not None and e.amount != stored.amount:
            return "amount"
        return ""
    if (e.debit, e.credit) != (stored.debit, stored.credit):
        return "account"
    if (e.amount or 0) != stored.amount:
        return "amount"
    return ""
