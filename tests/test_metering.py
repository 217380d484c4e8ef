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


_DIE_AFTER_RECORDING = """
import asyncio, os, signal, sys
from sovhub.hub import build_hub
from sovhub.metering import Meter, Usage
from sovhub.settings import load_settings

hub = build_hub(load_settings(data_dir=sys.argv[1], database_url=sys.argv[2], embedded_enabled=False))

async def main():
    meter = Meter(hub)
    await meter.start()
    for i in range(5):
        meter.record(Usage(request_id=f"dead-{i}", endpoint="chat", model="m", org_id=1, key_id=1))
    os.kill(os.getpid(), signal.SIGKILL)  # before any flush: only the journal holds them

asyncio.run(main())
"""


def test_a_killed_process_journal_is_replayed_once_at_the_next_start(hub: Hub) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DIE_AFTER_RECORDING, str(hub.settings.data_dir),
                           hub.settings.resolved_database_url], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert _count(hub) == 0
    [dead] = list((hub.settings.data_dir / "usage-journal").iterdir())
    segment = next(dead.glob("seg-*.jsonl"))
    with segment.open("ab") as fh:
        fh.write(b'{"request_id": "half-writ\n')  # a damaged record is skipped, not fatal
    # One row had reached the database before the kill: it must not be written twice.
    asyncio.run(_write(hub, [Usage(request_id="dead-0", endpoint="chat", model="m", org_id=1, key_id=1)]))

    async def restart() -> int:
        meter = Meter(hub)
        await meter.start()
        await meter.close()
        return meter.replayed

    assert asyncio.run(restart()) == 4
    with hub.db.session() as s:
        ids = sorted(s.scalars(select(UsageRecord.request_id)))
    assert ids == [f"dead-{i}" for i in range(5)]
    assert not dead.exists()
    assert asyncio.run(restart()) == 0  # nothing left to replay


async def _write(hub: Hub, rows: list[Usage]) -> None:
    meter = Meter(hub)
    for row in rows:
        meter.append(row)
    await meter.flush()


def test_a_live_process_journal_is_not_replayed_and_a_clean_close_leaves_none(hub: Hub) -> None:
    async def run() -> None:
        alive = Meter(hub)
        await alive.start()
        alive.record(Usage(request_id="live", endpoint="chat", model="m", org_id=1, key_id=1))
        other = Meter(hub)  # another replica sharing the data dir
        await other.start()
        assert other.replayed == 0 and alive.journal.dir.exists()
        await other.close()
        await alive.close()
        assert not alive.journal.dir.exists() and not other.journal.dir.exists()

    asyncio.run(run())
    assert _count(hub) == 1
