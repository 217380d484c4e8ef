"""A batch line is metered and charged once, however many replicas ran it.

Two runners on one hub stand for two replicas sharing the database (their own lease owners).
Replica A loses the lease of a line mid-generation and B takes the line over; or A dies right
after reserving the line's credits. Either way: one usage row, one charge, no hold left.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sovhub.accounts import principal_for_key
from sovhub.admission import admit
from sovhub.batches.runner import BatchRunner
from sovhub.batches.schedule import Scheduler
from sovhub.batches.store import BatchStore
from sovhub.batches.tables import BatchLine
from sovhub.credits.amounts import MICRO, parse_credits
from sovhub.credits.control import Credits
from sovhub.credits.ledger import Ledger
from sovhub.credits.live import MemoryLive
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditTransfer
from sovhub.hub import Hub, build_hub
from sovhub.lineheld import LineHold, holding
from sovhub.metering import Meter, Usage
from sovhub.store.base import utcnow
from sovhub.store.tables import UsageRecord
from tests.conftest import make_settings
from tests.fakes import FakePlugin

from .conftest import chat_line, read_lines, upload, wait_for

TEXT = "one two three four five"


@pytest.fixture
def funded(hub: Hub, app_client: TestClient) -> int:
    """acme pays with credits: 1,000 micro-credits per input token of `echo`, 2,000 per output token."""
    create_programme(hub, "Compute 2027", 1000 * MICRO, [("Fund", 10000)], ProgrammeRules(), actor="tests")
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=2000 * MICRO, actor="tests")
    grant = grant_credits(hub, "Compute 2027", "acme", parse_credits("5"), reason="pilot", actor="tests")
    hub.services.get(Credits).state.load()
    return grant.id


def _started_line(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> tuple[str, BatchRunner, BatchRunner]:
    created = sdk.batches.create(input_file_id=upload(sdk, [chat_line("only", TEXT, max_tokens=8)]),
                                 endpoint="/v1/chat/completions", completion_window="24h")
    store = hub.services.get(BatchStore)
    replica_a = hub.services.get(BatchRunner)
    replica_b = BatchRunner(hub, store, hub.services.get(Scheduler))
    row = store.claim_validation(replica_a.owner)
    assert row is not None
    app_client.portal.call(replica_a._validate, row)  # type: ignore[union-attr]
    return created.id, replica_a, replica_b


def _expire_leases(hub: Hub) -> None:
    with hub.db.session() as s:
        s.execute(update(BatchLine).values(lease_until=utcnow() - timedelta(seconds=1)))


def _settle(app_client: TestClient, hub: Hub) -> None:
    credits = hub.services.get(Credits)

    async def run() -> None:
        await hub.services.get(Meter).flush()
        await credits.flush_settlements()
        await credits.writer.drain()

    app_client.portal.call(run)  # type: ignore[union-attr]


def _charges(hub: Hub, batch_id: str) -> tuple[list[UsageRecord], list[CreditTransfer]]:
    with hub.db.session() as s:
        usage = list(s.scalars(select(UsageRecord).where(UsageRecord.batch_id == batch_id)))
        posts = list(s.scalars(select(CreditTransfer).where(CreditTransfer.kind == "post")))
    return usage, posts


def _finish(sdk: openai.OpenAI, app_client: TestClient, runner: BatchRunner, batch_id: str) -> Any:
    app_client.portal.call(runner.step)  # type: ignore[union-attr]
    return wait_for(sdk, batch_id, timeout=10)


@pytest.mark.parametrize("batch_settings", [{"enabled": False, "lease_s": 30.0}])
def test_a_line_whose_lease_is_lost_mid_answer_is_metered_and_charged_once(
    sdk: openai.OpenAI, app_client: TestClient, hub: Hub, fake_plugin: FakePlugin, funded: int
) -> None:
    batch_id, replica_a, replica_b = _started_line(sdk, app_client, hub)
    store = hub.services.get(BatchStore)
    backend = fake_plugin.instances["fake1"]
    backend.delay = 0.2  # a word every 0.2 s: A is still answering when its lease runs out
    (line_a,) = store.claim_lines(replica_a.owner, 1)
    running_a = app_client.portal.start_task_soon(replica_a._run, line_a, {})  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while backend.yielded == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.yielded >= 1, "replica A never started answering"
    _expire_leases(hub)  # A stalls past its lease: B takes the line over while A still runs
    (line_b,) = store.claim_lines(replica_b.owner, 1)
    assert (line_b.id, line_b.attempt) == (line_a.id, 2)
    app_client.portal.call(replica_b._run, line_b, {})  # type: ignore[union-attr]
    running_a.result(timeout=20)  # A ends too; its result is dropped
    assert backend.calls == 2  # the model really answered twice
    batch = _finish(sdk, app_client, replica_a, batch_id)
    assert batch.status == "completed" and [o["custom_id"] for o in read_lines(sdk, batch.output_file_id)] == ["only"]
    _settle(app_client, hub)
    usage, posts = _charges(hub, batch_id)
    assert len(usage) == 1 and usage[0].batch_line_key == f"{batch_id}:1:0"
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (5, 5)
    charged = [p for p in posts if p.amount > 0]
    assert len(charged) == 1 and charged[0].amount == 5 * 1000 + 5 * 2000
    ledger = hub.services.get(Ledger)
    account = ledger.account_id("grant", funded)
    balance = ledger.balances([account])[account]
    assert (balance.debits_posted, balance.debits_pending) == (15000, 0)
    live = hub.services.get(Credits).live
    assert isinstance(live, MemoryLive) and live.holds == 0
    assert ledger.verify() == []


@pytest.mark.parametrize("batch_settings", [{"enabled": False, "lease_s": 30.0}])
def test_a_replica_killed_after_reserving_a_line_leaves_no_second_charge(
    sdk: openai.OpenAI, app_client: TestClient, hub: Hub, funded: int
) -> None:
    batch_id, replica_a, replica_b = _started_line(sdk, app_client, hub)
    store = hub.services.get(BatchStore)
    (line_a,) = store.claim_lines(replica_a.owner, 1)
    principal = principal_for_key(hub, line_a.key_id or -1)

    async def reserve_then_die() -> None:
        # What A did before it was killed: its line's admission, credits reserved, never settled.
        with holding(LineHold(batch_id, line_a.line_no, line_a.attempt)):
            await admit(hub, principal, "chat", "echo", reserve=100, request_id="killed")

    app_client.portal.call(reserve_then_die)  # type: ignore[union-attr]
    live = hub.services.get(Credits).live
    assert isinstance(live, MemoryLive) and live.holds == 1
    _expire_leases(hub)
    (line_b,) = store.claim_lines(replica_b.owner, 1)
    assert line_b.attempt == 2
    app_client.portal.call(replica_b._run, line_b, {})  # type: ignore[union-attr]
    batch = _finish(sdk, app_client, replica_b, batch_id)
    assert batch.status == "completed"
    _settle(app_client, hub)
    assert live.holds == 0  # A's reservation was voided when B took the line over, not left to expire
    usage, posts = _charges(hub, batch_id)
    assert len(usage) == 1
    assert [p.amount for p in posts if p.amount > 0] == [5 * 1000 + 5 * 2000]
    with hub.db.session() as s:
        voided = list(s.scalars(select(CreditTransfer).where(CreditTransfer.kind == "void")))
    assert [v.request_id for v in voided] == ["killed"]
    ledger = hub.services.get(Ledger)
    account = ledger.account_id("grant", funded)
    assert ledger.balances([account])[account].debits_posted == 15000
    assert ledger.verify() == []


@pytest.mark.parametrize("batch_settings", [{"enabled": False}])
def test_a_preempted_attempt_is_not_charged_its_rerun_is(
    sdk: openai.OpenAI, app_client: TestClient, hub: Hub, fake_plugin: FakePlugin, funded: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch_id, replica_a, _ = _started_line(sdk, app_client, hub)
    store = hub.services.get(BatchStore)
    backend = fake_plugin.instances["fake1"]
    answer = backend.chat_stream

    async def preempted_after_two_words(model: str, messages: Any, params: Any, cancel: Any) -> Any:
        sent = 0
        async for chunk in answer(model, messages, params, cancel):
            yield chunk
            sent += 1
            if sent == 3:  # the role chunk and two words: an interactive request arrives
                cancel.preempt()

    monkeypatch.setattr(backend, "chat_stream", preempted_after_two_words)
    (line,) = store.claim_lines(replica_a.owner, 1)
    app_client.portal.call(replica_a._run, line, {})  # type: ignore[union-attr]
    with hub.db.session() as s:
        assert s.scalars(select(BatchLine.status)).one() == "pending"  # given back to run again
    _settle(app_client, hub)
    usage, posts = _charges(hub, batch_id)
    assert usage == [] and [p for p in posts if p.amount > 0] == []
    live = hub.services.get(Credits).live
    assert isinstance(live, MemoryLive) and live.holds == 0
    monkeypatch.setattr(backend, "chat_stream", answer)
    (again,) = store.claim_lines(replica_a.owner, 1)
    app_client.portal.call(replica_a._run, again, {})  # type: ignore[union-attr]
    _settle(app_client, hub)
    usage, posts = _charges(hub, batch_id)
    assert len(usage) == 1 and [p.amount for p in posts if p.amount > 0] == [15000]


def test_the_database_refuses_a_second_row_for_one_batch_line(data_dir: Path, database_url: str | None) -> None:
    """The defence under the runner's: were two attempts' rows both sent, the unique key keeps one (SQLite and
    PostgreSQL: each has its own INSERT ... ON CONFLICT DO NOTHING)."""
    hub = build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False}))
    try:
        _two_rows_for_one_line(hub)
    finally:
        hub.close()


def _two_rows_for_one_line(hub: Hub) -> None:
    meter = hub.services.get(Meter)
    rows = [Usage(request_id=f"r{i}", endpoint="chat", model="echo", org_id=1, key_id=None, batch_id="batch_x",
                  batch_line_key="batch_x:3:0", prompt_tokens=7) for i in range(2)]
    assert meter.write(rows[:1]) == 1
    meter.write(rows[1:])  # another replica's late write of the same line
    meter.write([Usage(request_id="i1", endpoint="chat", model="echo", org_id=1, key_id=None),
                 Usage(request_id="i2", endpoint="chat", model="echo", org_id=1, key_id=None)])
    with hub.db.session() as s:
        line_rows = list(s.scalars(select(UsageRecord).where(UsageRecord.batch_id == "batch_x")))
        interactive = list(s.scalars(select(UsageRecord).where(UsageRecord.request_id.in_(["i1", "i2"]))))
    assert [r.request_id for r in line_rows] == ["r0"]
    assert len(interactive) == 2  # rows without a line key never collide
