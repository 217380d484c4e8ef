from __future__ import annotations

import asyncio

from sqlalchemy import event, func, select

from sovhub.hub import Hub
from sovhub.metering import Meter, Usage
from sovhub.store.tables import UsageRecord


def _count(hub: Hub) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def test_record_does_no_database_io(hub: Hub) -> None:
    statements: list[str] = []
    event.listen(hub.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    meter = Meter(hub)
    for i in range(1000):
        meter.record(Usage(request_id=str(i), endpoint="chat", model="m", org_id=1, key_id=1))
    assert statements == [] and meter.pending == 1000


def test_flush_writes_in_batches_and_close_flushes_the_rest(hub: Hub) -> None:
    hub.settings.usage_flush_batch = 100
    inserts: list[int] = []
    event.listen(hub.db.engine, "before_cursor_execute",
                 lambda conn, cur, stmt, params, ctx, many: inserts.append(len(params) if many else 1)
                 if stmt.startswith("INSERT INTO usage_records") else None)

    async def run() -> None:
        meter = Meter(hub)
        await meter.start()
        for i in range(250):
            meter.record(Usage(request_id=str(i), endpoint="chat", model="m", org_id=1, key_id=1, prompt_tokens=2))
        await meter.close()
        assert meter.pending == 0 and meter.written == 250

    asyncio.run(run())
    assert _count(hub) == 250
    assert inserts == [100, 100, 50]


def test_failed_write_keeps_records(hub: Hub, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    meter = Meter(hub)
    meter.record(Usage(request_id="x", endpoint="chat", model="m", org_id=1, key_id=1))

    def boom(batch):
        raise OperationalError("insert", {}, Exception("db down"))

    monkeypatch.setattr(meter, "write", boom)
    assert asyncio.run(meter.flush()) == 0
    assert meter.pending == 1
    monkeypatch.undo()
    assert asyncio.run(meter.flush()) == 1 and _count(hub) == 1
