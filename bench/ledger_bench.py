"""Ledger throughput on PostgreSQL: transfers posted per second in batches, then `ledger verify`.

Three ways, one run, each on a fresh schema of the same database:

* ``posted``   - one-phase usage transfers (grant -> usage, split across three partners), in
  batches of ``--batch`` per transaction: the ledger's raw rate;
* ``two-phase`` - a pending transfer and its post (part of it) per request, as the journal
  writes them: posted transfers per second counts the posts;
* ``journal`` - the real path: reservations and settlements in the in-memory live store, copied
  into the ledger by the journal writer (``JournalWriter.drain``).

After each, ``Ledger.verify()`` must report nothing. Writes bench/results/ledger.json.

    SOVHUB_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/ledger_bench.py --transfers 50000 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sovhub.accounts import create_org  # noqa: E402
from sovhub.credits.amounts import MICRO  # noqa: E402
from sovhub.credits.control import Credits  # noqa: E402
from sovhub.credits.ledger import Entry, Ledger  # noqa: E402
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits  # noqa: E402
from sovhub.hub import build_hub  # noqa: E402
from sovhub.plugins import get_plugin_manager  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402


def _hub(base: str, schema: str, data_dir: str) -> Any:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    pm = get_plugin_manager(load_entrypoints=False)
    for name in ("sovhub.safety.plugin", "sovhub.assistant.plugin"):
        pm.unregister(name=name)
    sep = "&" if "?" in base else "?"
    settings = load_settings(data_dir=data_dir, database_url=f"{base}{sep}options=-csearch_path%3D{schema}",
                             embedded_enabled=False, safety={"enabled": False, "warm_up": False},
                             credits={"journal_batch": 5000})
    hub = build_hub(settings, pm=pm)
    create_org(hub, "bench")
    create_programme(hub, "Bench", 10**12 * MICRO, [("Fund", 5000), ("Bank", 3000), ("Foundation", 2000)],
                     ProgrammeRules(), actor="bench")
    grant = grant_credits(hub, "Bench", "bench", 10**11 * MICRO, reason="bench", actor="bench")
    return hub, grant.id


def _drop(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def run(mode: str, base: str, n: int, batch: int) -> dict[str, Any]:
    schema = "bench_" + uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory() as data_dir:
        hub, grant_id = _hub(base, schema, data_dir)
        try:
            ledger = hub.services.get(Ledger)
            account = ledger.account_id("grant", grant_id)
            usage = ledger.account_id("usage", 1)
            assert account and usage
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
            elapsed = time.perf_counter() - t0
            v0 = time.perf_counter()
            problems = ledger.verify()
            verify_s = time.perf_counter() - v0
            balance = ledger.balances([account])[account]
            assert balance.debits_posted == n * 1234, (balance.debits_posted, n * 1234)
            return {"mode": mode, "transfers": n, "seconds": round(elapsed, 3), "posted_per_s": round(n / elapsed),
                    "verify_s": round(verify_s, 2), "verify_problems": [str(p) for p in problems]}
        finally:
            hub.close()
            _drop(base, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="posted,two-phase,journal")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ledger.json"))
    args = parser.parse_args()
    base = os.environ.get("SOVHUB_BENCH_DATABASE_URL") or os.environ.get("SOVHUB_TEST_DATABASE_URL")
    if not base:
        sys.exit("set SOVHUB_BENCH_DATABASE_URL=postgresql+psycopg://...")
    runs: dict[str, list[dict[str, Any]]] = {}
    modes = args.modes.split(",")
    for rep in range(args.reps):
        for mode in modes[rep % len(modes):] + modes[: rep % len(modes)]:  # rotate the order
            result = run(mode, base, args.transfers, args.batch)
            runs.setdefault(mode, []).append(result)
            print(json.dumps(result))
    summary = {mode: {"median_posted_per_s": statistics.median(r["posted_per_s"] for r in rs),
                      "runs": [r["posted_per_s"] for r in rs],
                      "verify_clean": all(not r["verify_problems"] for r in rs)} for mode, rs in runs.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"transfers": args.transfers, "batch": args.batch, "reps": args.reps,
                                          "cpus": os.cpu_count(), "summary": summary, "runs": runs}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
