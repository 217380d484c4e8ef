"""Ledger throughput: transfers per second, batched and group-committed, against a per-request UPDATE peer.

Each run gets a fresh database (a new PostgreSQL schema, or a new SQLite file) with one programme
of three partners and one grant, writes ``--transfers`` usage transfers, then runs
``Ledger.verify()``, which must report nothing. Modes:

* ``posted``    - one-phase usage transfers (grant -> usage, split across the partners) in batches
  of each ``--batches`` size, one ``Ledger.apply`` (one transaction) per batch;
* ``two-phase`` - per request a pending transfer and its post (part of it), in the same batches:
  ``posted_per_s`` counts posts, ``transfers_per_s`` both;
* ``journal``   - the real path: reservations and settlements in the in-memory live store,
  copied into the ledger by the journal writer (``JournalWriter.drain``);
* ``group``     - ``--threads`` threads (``--requests`` calls in all) each calling ``Ledger.apply``
  with one request's transfer at a time (no caller batching): the group commit gathers
  the calls that wait into one transaction;
* ``peer``      - the per-request spend update of LiteLLM's proxy, re-implemented here (not its
  code): per request, one transaction that adds the cost to the key's ``spend`` counter with one
  UPDATE and appends a spend-log row, from ``--threads`` threads (``--requests`` in all). No balance check, no double
  entry, no two-phase: the cheapest honest form of that pattern. PostgreSQL only (as LiteLLM).

Medians over ``--reps`` runs (the order of the modes rotates). Writes bench/results/ledger.json
(commit, machine, load average at the start and after each run).

    SOVHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/ledger_bench.py --transfers 20000 --reps 3 [--databases postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from procs import machine_info  # noqa: E402

from sovhub.accounts import create_org  # noqa: E402
from sovhub.credits.amounts import MICRO  # noqa: E402
from sovhub.credits.control import Credits  # noqa: E402
from sovhub.credits.ledger import Entry, Ledger  # noqa: E402
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits  # noqa: E402
from sovhub.hub import build_hub  # noqa: E402
from sovhub.plugins import get_plugin_manager  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402

PEER_SCHEMA = """
CREATE TABLE peer_keys (token VARCHAR(64) PRIMARY KEY, spend DOUBLE PRECISION NOT NULL DEFAULT 0);
CREATE TABLE peer_spend_logs (request_id VARCHAR(100) PRIMARY KEY, api_key VARCHAR(64) NOT NULL,
    model VARCHAR(200), spend DOUBLE PRECISION NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    start_time TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now());
INSERT INTO peer_keys (token) VALUES ('sk-bench');
"""


class _Db:
    """A fresh database for one run: a PostgreSQL schema of `base`, or an SQLite file (`base` None)."""

    def __init__(self, base: str | None) -> None:
        self.base = base
        self.schema = "bench_" + uuid.uuid4().hex[:10]
        self.tmp = tempfile.TemporaryDirectory()
        self.url: str | None = None
        if base:
            engine = create_engine(base)
            with engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            engine.dispose()
            sep = "&" if "?" in base else "?"
            self.url = f"{base}{sep}options=-csearch_path%3D{self.schema}"

    def close(self) -> None:
        if self.base:
            engine = create_engine(self.base)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            engine.dispose()
        self.tmp.cleanup()


def _hub(db: _Db) -> tuple[Any, int]:
    pm = get_plugin_manager(load_entrypoints=False)
    for name in ("sovhub.safety.plugin", "sovhub.assistant.plugin"):
        pm.unregister(name=name)
    settings = load_settings(data_dir=db.tmp.name, database_url=db.url, embedded_enabled=False,
                             safety={"enabled": False, "warm_up": False}, credits={"journal_batch": 5000})
    hub = build_hub(settings, pm=pm)
    create_org(hub, "bench")
    create_programme(hub, "Bench", 10**12 * MICRO, [("Fund", 5000), ("Bank", 3000), ("Foundation", 2000)],
                     ProgrammeRules(), actor="bench")
    grant = grant_credits(hub, "Bench", "bench", 10**11 * MICRO, reason="bench", actor="bench")
    return hub, grant.id


def _threads(n_threads: int, n: int, work: Callable[[int], None]) -> None:
    """Run work(i) for i in range(n) from `n_threads` threads, each taking the next i."""
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                work(i)
            except BaseException as exc:  # noqa: BLE001 - reported after the run
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def run_peer(db: _Db, n: int, n_threads: int) -> dict[str, Any]:
    assert db.url is not None
    engine = create_engine(db.url, pool_size=n_threads, max_overflow=0)
    with engine.begin() as conn:
        for statement in filter(str.strip, PEER_SCHEMA.split(";")):
            conn.execute(text(statement))
    update = text("UPDATE peer_keys SET spend = spend + :cost WHERE token = :token")
    log = text("INSERT INTO peer_spend_logs (request_id, api_key, model, spend, prompt_tokens, completion_tokens, "
               "start_time) VALUES (:rid, :token, 'm', :cost, 10, 5, CURRENT_TIMESTAMP)")

    def request(i: int) -> None:
        with engine.begin() as conn:
            conn.execute(update, {"cost": 0.001234, "token": "sk-bench"})
            conn.execute(log, {"rid": f"r{i}", "token": "sk-bench", "cost": 0.001234})

    t0 = time.perf_counter()
    _threads(n_threads, n, request)
    elapsed = time.perf_counter() - t0
    with engine.connect() as conn:
        logs = conn.execute(text("SELECT count(*) FROM peer_spend_logs")).scalar()
    engine.dispose()
    assert logs == n, (logs, n)
    return {"seconds": round(elapsed, 3), "posted_per_s": round(n / elapsed), "transfers_per_s": round(n / elapsed),
            "verify_problems": []}


def run_ledger(mode: str, db: _Db, n: int, batch: int, n_threads: int) -> dict[str, Any]:
    hub, grant_id = _hub(db)
    try:
        ledger = hub.services.get(Ledger)
        account = ledger.account_id("grant", grant_id)
        usage = ledger.account_id("usage", 1)
        assert account and usage
        rows = n
        t0 = time.perf_counter()
        if mode == "journal":
            credits = hub.services.get(Credits)

            async def drive() -> None:
                await credits.ensure_loaded(credits.state.grants(1))
                for start in range(0, n, batch):
                    for i in range(start, min(start + batch, n)):
                        got = await credits.live.reserve(f"t{i}", [grant_id], 2000, 3_600_000,
                                                         json.dumps({"org": 1, "rid": f"r{i}", "model": "m"}))
                        assert got.ok
                        credits.queue_settlement(f"t{i}", 1234, {"prompt": 10, "completion": 5})
                    await credits.flush_settlements()
                    await credits.writer.drain()

            asyncio.run(drive())
            rows = 2 * n
        elif mode == "group":
            def one(i: int) -> None:
                out = ledger.apply([Entry(f"u{i}", "posted", debit=account, credit=usage, amount=1234, org_id=1,
                                          request_id=f"r{i}", model="m")])
                assert out.applied == 1, out.refused

            _threads(n_threads, n, one)
        else:
            for start in range(0, n, batch):
                entries: list[Entry] = []
                for i in range(start, min(start + batch, n)):
                    if mode == "posted":
                        entries.append(Entry(f"u{i}", "posted", debit=account, credit=usage, amount=1234,
                                             org_id=1, request_id=f"r{i}", model="m"))
                    else:
                        entries.append(Entry(f"u{i}", "pending", debit=account, credit=usage, amount=2000,
                                             org_id=1, request_id=f"r{i}", model="m"))
                        entries.append(Entry(f"u{i}.post", "post", pending_id=f"u{i}", amount=1234,
                                             org_id=1, request_id=f"r{i}", model="m"))
                result = ledger.apply(entries)
                assert not result.refused, result.refused[:3]
            rows = n if mode == "posted" else 2 * n
        elapsed = time.perf_counter() - t0
        v0 = time.perf_counter()
        problems = ledger.verify()
        verify_s = time.perf_counter() - v0
        balance = ledger.balances([account])[account]
        assert balance.debits_posted == n * 1234, (balance.debits_posted, n * 1234)
        out = {"seconds": round(elapsed, 3), "posted_per_s": round(n / elapsed),
               "transfers_per_s": round(rows / elapsed), "verify_s": round(verify_s, 2),
               "verify_problems": [str(p) for p in problems]}
        if mode == "group":
            out["transactions"] = ledger.group_commits
            out["calls_per_transaction"] = round(ledger.group_submissions / max(ledger.group_commits, 1), 1)
        return out
    finally:
        hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--batches", default="500,2000,5000", help="batch sizes for posted and two-phase")
    parser.add_argument("--journal-batch", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=32, help="callers for group and peer")
    parser.add_argument("--requests", type=int, default=3000, help="transfers (one per call) for group and peer")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="posted,two-phase,journal,group,peer")
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ledger.json"))
    args = parser.parse_args()
    base = os.environ.get("SOVHUB_BENCH_DATABASE_URL") or os.environ.get("SOVHUB_TEST_DATABASE_URL")
    databases = args.databases.split(",")
    if "postgresql" in databases and not base:
        sys.exit("set SOVHUB_BENCH_DATABASE_URL=postgresql+psycopg://... (or --databases sqlite)")
    configs: list[tuple[str, int]] = []
    for mode in args.modes.split(","):
        if mode in ("posted", "two-phase"):
            configs += [(mode, int(b)) for b in args.batches.split(",")]
        else:
            configs.append((mode, args.journal_batch if mode == "journal" else 1))
    info = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(args.reps):
        order = configs[rep % len(configs):] + configs[: rep % len(configs)]
        for database in databases:
            for mode, batch in order:
                if mode == "peer" and database != "postgresql":
                    continue  # LiteLLM's proxy keeps its spend in PostgreSQL only
                db = _Db(base if database == "postgresql" else None)
                try:
                    if mode == "peer":
                        result = run_peer(db, args.requests, args.threads)
                    else:
                        n = args.requests if mode == "group" else args.transfers
                        result = run_ledger(mode, db, n, batch, args.threads)
                finally:
                    db.close()
                key = f"{database} {mode}" + (f" batch={batch}" if mode in ("posted", "two-phase", "journal") else
                                              f" threads={args.threads}")
                result = {"config": key, **result, "loadavg_1m_after": round(os.getloadavg()[0], 2)}
                runs.setdefault(key, []).append(result)
                print(json.dumps(result), flush=True)
    summary = {key: {"median_posted_per_s": statistics.median(r["posted_per_s"] for r in rs),
                     "median_transfers_per_s": statistics.median(r["transfers_per_s"] for r in rs),
                     "runs_posted_per_s": [r["posted_per_s"] for r in rs],
                     "verify_clean": all(not r["verify_problems"] for r in rs)} for key, rs in runs.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "machine": info, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()], "transfers": args.transfers,
        "threads": args.threads, "reps": args.reps, "summary": summary, "runs": runs}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
