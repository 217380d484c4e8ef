"""The batched ledger: group commit, per-transfer results, concurrency, replays, crashes between phases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sovhub.credits.amounts import MICRO
from sovhub.credits.ledger import Entry, Ledger, LedgerRefused, _Submission
from sovhub.credits.programmes import grant_credits
from sovhub.credits.tables import CreditTransfer
from sovhub.store.base import utcnow
from sovhub.store.db import Database

ROOT = Path(__file__).resolve().parents[2]


def _accounts(hub, programme, credits: int = 10) -> tuple[int, int]:
    grant = grant_credits(hub, programme.name, "acme", credits * MICRO, reason="pilot", actor="tests")
    ledger = hub.services.get(Ledger)
    return ledger.account_id("grant", grant.id), ledger.account_id("usage", programme.id)


def _transfers(hub) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CreditTransfer)))


def test_many_concurrent_writers_over_the_limit_never_overdraw(hub, programme) -> None:
    """64 threads on one ledger and 32 on a second one (another replica's engine), 3x what the grant holds."""
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 40)
    replica = Ledger(Database(hub.db.url))
    start = threading.Barrier(96)

    def spend(i: int) -> bool:
        book = ledger if i < 64 else replica
        start.wait()
        kind = "pending" if i % 2 else "posted"
        try:
            book.apply([Entry(f"w{i}", kind, debit=grant, credit=usage, amount=MICRO // 2),
                        Entry(f"w{i}b", kind, debit=grant, credit=usage, amount=MICRO // 2)], strict=True)
            return True
        except LedgerRefused as exc:
            assert "would be overdrawn" in exc.message
            return False

    with ThreadPoolExecutor(96) as pool:
        results = list(pool.map(spend, range(96)))
    replica.db.engine.dispose()
    assert sum(results) == 40
    g = ledger.balances([grant])[grant]
    assert g.debits_posted + g.debits_pending == 40 * MICRO and ledger.available(g) == 0
    # All or nothing per call: no call left one of its two halves.
    assert _transfers(hub) - 4 == 2 * 40  # 3 fundings + 1 grant before
    # The group commit carried several calls per transaction.
    assert ledger.group_submissions == 64 and ledger.group_commits < 64
    assert ledger.verify() == []


def test_a_refused_submission_leaves_the_others_in_its_group_commit_alone(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    subs = [
        _Submission([Entry("a", "pending", debit=grant, credit=usage, amount=6 * MICRO)], strict=True),
        _Submission([Entry("b1", "pending", debit=grant, credit=usage, amount=MICRO),
                     Entry("b2", "pending", debit=grant, credit=usage, amount=5 * MICRO)], strict=True),
        _Submission([Entry("c1", "pending", debit=grant, credit=usage, amount=MICRO),
                     Entry("c2", "pending", debit=grant, credit=usage, amount=5 * MICRO),
                     Entry("c1.post", "post", pending_id="c1", amount=MICRO // 2)], strict=False),
        _Submission([Entry("b1.post", "post", pending_id="b1")], strict=False),
    ]
    with hub.db.session() as s:
        outcomes = ledger._apply_in(s, subs)
    assert isinstance(outcomes[1], LedgerRefused) and "would be overdrawn" in outcomes[1].message
    assert outcomes[0].results == ["applied"]
    assert outcomes[2].results == ["applied", "refused", "applied"]
    # b1 went with its refused submission: it cannot be posted.
    assert outcomes[3].results == ["refused"] and "no pending transfer b1" in outcomes[3].refused[0][1]
    g = ledger.balances([grant])[grant]
    assert (g.debits_pending, g.debits_posted) == (6 * MICRO, MICRO // 2)
    assert ledger.verify() == []


def test_ids_are_applied_once_across_batches_threads_and_replicas(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    replica = Ledger(Database(hub.db.url))
    same = [Entry(f"d{i}", "posted", debit=grant, credit=usage, amount=MICRO // 10) for i in range(20)]
    start = threading.Barrier(24)

    def replay(i: int) -> tuple[int, int]:
        start.wait()
        out = (ledger if i % 2 else replica).apply(same[i % 4:] + same[: i % 4])
        assert not out.refused
        return out.applied, out.duplicates

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(replay, range(24)))
    replica.db.engine.dispose()
    assert sum(a for a, _ in results) == 20 and sum(d for _, d in results) == 23 * 20
    assert ledger.balances([grant])[grant].debits_posted == 2 * MICRO
    # A replay is the same transfer; the same id with other content is refused, not applied.
    again = ledger.apply([Entry("d0", "posted", debit=grant, credit=usage, amount=MICRO // 10),
                          Entry("d1", "posted", debit=grant, credit=usage, amount=MICRO),
                          Entry("d2", "pending", debit=grant, credit=usage, amount=MICRO // 10),
                          Entry("d3", "posted", debit=usage, credit=grant, amount=MICRO // 10)])
    assert again.results == ["duplicate", "refused", "refused", "refused"]
    assert [r for _, r in again.refused] == ["transfer d1 exists with a different amount",
                                            "transfer d2 exists with a different kind",
                                            "transfer d3 exists with a different account"]
    assert ledger.balances([grant])[grant].debits_posted == 2 * MICRO
    # Within one batch too: the second of two equal ids is a replay.
    twice = ledger.apply([Entry("e1", "posted", debit=grant, credit=usage, amount=1)] * 2)
    assert twice.results == ["applied", "duplicate"]
    assert ledger.verify() == []


def test_a_pending_transfer_past_its_timeout_can_only_expire(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    now = utcnow()
    ledger.apply([Entry("late", "pending", debit=grant, credit=usage, amount=MICRO, timeout_at=now - timedelta(seconds=1)),
                  Entry("soon", "pending", debit=grant, credit=usage, amount=MICRO, timeout_at=now + timedelta(hours=1))])
    out = ledger.apply([Entry("late.post", "post", pending_id="late"), Entry("late.void", "void", pending_id="late"),
                        Entry("soon.expire", "expire", pending_id="soon")])
    assert [r for _, r in out.refused] == ["transfer late.post: pending transfer late has expired",
                                          "transfer late.void: pending transfer late has expired",
                                          "transfer soon.expire: pending transfer soon has not timed out"]
    assert ledger.expire_pending() == 1
    g = ledger.balances([grant])[grant]
    assert (g.debits_pending, g.debits_posted) == (MICRO, 0)
    assert ledger.verify() == []


_CHILD = """
import os, signal, sys
from datetime import timedelta
from sovhub.store.db import Database, import_table_modules
import_table_modules()
from sovhub.credits.ledger import Entry, Ledger
from sovhub.store.base import utcnow
url, grant, usage, stage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ledger = Ledger(Database(url))
if stage == "between-phases":
    ledger.apply([Entry("k1", "pending", debit=grant, credit=usage, amount=3_000_000,
                        timeout_at=utcnow() + timedelta(seconds=2))])
else:
    with ledger.db.session() as s:
        ledger.apply([Entry(f"m{i}", "posted", debit=grant, credit=usage, amount=1000) for i in range(500)],
                     session=s)
        s.flush()
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
print("reserved", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_child(hub, grant: int, usage: int, stage: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", _CHILD, hub.db.url, str(grant), str(usage), stage],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout


def test_a_process_killed_between_phases_leaves_a_hold_that_expires(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    assert "reserved" in _killed_child(hub, grant, usage, "between-phases")
    g = ledger.balances([grant])[grant]
    assert g.debits_pending == 3 * MICRO and ledger.verify() == []
    assert ledger.expire_pending() == 0  # not yet due
    later = utcnow() + timedelta(seconds=3)
    assert ledger.expire_pending(later) == 1
    # The dead process's post, arriving late, finds the hold expired and changes nothing.
    late = ledger.apply([Entry("k1.post", "post", pending_id="k1", amount=MICRO)])
    assert late.results == ["refused"] and "already resolved" in late.refused[0][1]
    g = ledger.balances([grant])[grant]
    assert (g.debits_pending, g.debits_posted) == (0, 0)
    assert ledger.verify() == []


def test_a_process_killed_inside_a_batch_leaves_nothing_of_it(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    before = _transfers(hub)
    assert "written" in _killed_child(hub, grant, usage, "mid-batch")
    assert _transfers(hub) == before
    assert ledger.balances([grant])[grant].debits_posted == 0
    assert ledger.verify() == []
    # The batch applies whole when sent again.
    out = ledger.apply([Entry(f"m{i}", "posted", debit=grant, credit=usage, amount=1000) for i in range(500)])
    assert out.applied == 500 and ledger.verify() == []


@pytest.mark.parametrize("size", [1, 3000])
def test_a_large_batch_mixing_every_kind_matches_verify(hub, programme, size) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 100)
    entries: list[Entry] = []
    for i in range(size):
        entries.append(Entry(f"p{i}", "pending", debit=grant, credit=usage, amount=1000 + i))
        entries.append(Entry(f"p{i}.{'post' if i % 3 else 'void'}", "post" if i % 3 else "void",
                             pending_id=f"p{i}", amount=(i % 1000) if i % 3 else None))
        entries.append(Entry(f"q{i}", "posted", debit=grant, credit=usage, amount=7))
    out = ledger.apply(entries)
    assert out.applied == 3 * size and not out.refused
    posted = sum(i % 1000 for i in range(size) if i % 3) + 7 * size
    assert ledger.balances([grant])[grant].debits_posted == posted
    assert ledger.verify() == []


def test_a_batch_that_meets_a_concurrent_writer_of_its_id_reads_again_and_refuses_it(hub, programme,
                                                                                     database_url) -> None:
    """Same id, disjoint accounts (so no shared row lock): the unique index decides, the loser retries."""
    ledger = hub.services.get(Ledger)
    grant, usage = _accounts(hub, programme, 10)
    partners = sorted(a for a in range(1, grant) if a not in (grant, usage))[:3]
    replica = Ledger(Database(hub.db.url))
    outcome: list[object] = []
    with hub.db.session() as s:
        ledger.apply([Entry("x", "posted", debit=partners[0], credit=partners[1], amount=5, code="adjustment")],
                     session=s)
        other = threading.Thread(target=lambda: outcome.append(replica.apply(
            [Entry("x", "posted", debit=partners[2], credit=grant, amount=5, code="adjustment")])))
        other.start()
        other.join(1.0)
        assert other.is_alive()  # waiting: on the id's index entry (PostgreSQL), on the write lock (SQLite)
    other.join(30)
    replica.db.engine.dispose()
    (result,) = outcome
    assert result.results == ["refused"] and result.refused[0][1] == "transfer x exists with a different account"
    assert replica.retries == (1 if database_url else 0)
    assert ledger.verify() == []
