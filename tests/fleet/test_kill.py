"""kill -9 of a replica under load: the other replica's clients see no error, and every answered request of
the killed one is in usage once its journal is replayed."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.server import RemoteHub

from .conftest import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: A long flush interval: without the journal, a kill would lose about this many seconds of usage.
SLOW_FLUSH = {"SOVHUB_USAGE_FLUSH_INTERVAL_S": "1.0"}


def test_kill_9_loses_no_answered_request_from_usage(make_fleet: object) -> None:
    fleet: Fleet = make_fleet()  # type: ignore[operator]
    victim, other = fleet.start(2, **SLOW_FLUSH)
    answered: dict[str, list[str]] = {victim.url: [], other.url: []}
    failures: dict[str, list[str]] = {victim.url: [], other.url: []}
    stop = threading.Event()

    def load(replica: RemoteHub) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post(replica.url + "/v1/chat/completions",
                                    headers={"authorization": f"Bearer {fleet.key}"},
                                    json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
                except httpx.HTTPError as exc:
                    failures[replica.url].append(repr(exc))
                    if replica is victim:
                        time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    answered[replica.url].append(r.headers["x-request-id"])
                else:
                    failures[replica.url].append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=load, args=(r,)) for r in (victim, victim, victim, other, other)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.5)
        assert victim.proc is not None
        victim.proc.kill()  # SIGKILL: no shutdown, no flush
        victim.proc.wait(10)
        time.sleep(1.0)  # the other replica keeps serving
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    killed = set(answered[victim.url])
    assert len(killed) > 20, "the victim answered some requests before it was killed"
    assert failures[other.url] == [], failures[other.url][:5]
    assert len(answered[other.url]) > 20

    journals = victim.data_dir / "usage-journal"
    left = [p for p in journals.iterdir() if any(p.glob("seg-*.jsonl"))]
    assert len(left) == 1, "the killed process left its journal"

    engine = create_engine(fleet.database_url)
    try:
        with engine.connect() as conn:
            before = {r[0] for r in conn.execute(text("SELECT request_id FROM usage_records"))}
        lost_without_journal = len(killed - before)
        restarted = RemoteHub(victim.data_dir, env=victim.env, timeout=180)
        fleet.replicas.append(restarted)
        restarted.start()  # replays the journal before it is ready
        with engine.connect() as conn:
            rows = [r[0] for r in conn.execute(text("SELECT request_id FROM usage_records"))]
    finally:
        engine.dispose()
    print(f"\nkill -9 under load: victim answered {len(killed)}, {lost_without_journal} of them not yet in usage "
          f"at the kill; after the journal's replay {len(killed - set(rows))} missing, "
          f"{len(rows) - len(set(rows))} duplicated; other replica {len(answered[other.url])} answered, 0 failed")
    assert lost_without_journal > 0, "the kill came between flushes (1 s apart): some rows were only journaled"
    assert killed <= set(rows)
    assert set(answered[other.url]) <= set(rows)
    assert len(rows) == len(set(rows)), "no request is metered twice"
    assert not (journals / left[0].name).exists(), "the replayed journal is removed"
