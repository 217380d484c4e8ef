"""The sizing table of docs/operations.md is recomputed here from the result files it is derived from.

The replicas benchmark measured 1, 2 and 3 replicas at one fixed load; the CPU, Redis commands and database
transactions per second each fit a line in the number of replicas (a part per request, a part per replica). The
guards' cost per request is the single-process gateway benchmark with them on minus off. The table applies the
assumptions the docs state to those fitted figures; a changed result file or assumption changes the table, and
a table edited by hand fails here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")

# The assumptions docs/operations.md states.
REQUESTS_PER_USER = 15
PEAK_HOUR_SHARE = 0.12
BUSY = 0.6  # of one core per replica
SPARE = 1
ANSWER_TOKENS = 300
POOL_BOUND = 10 + 20  # store/db.py: pool_size + max_overflow


def _result(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text(encoding="utf-8"))
    return data


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def _section() -> str:
    return OPERATIONS.split("## Sizing (projections)")[1].split("\n## ")[0]


def measured() -> dict[str, float]:
    saturation = _result("replicas-saturation.json")
    rate = saturation["args"]["rate"]
    rows = [m for m in saturation["medians"] if m["replicas"] > 0]
    assert [m["replicas"] for m in rows] == [1, 2, 3] and all(m["errors"] == 0 for m in rows)
    cpu = _line([(m["replicas"], m["cpu_ms_per_request"] * rate) for m in rows])  # ms of CPU per second
    redis = _line([(m["replicas"], m["redis_commands_per_request"] * rate) for m in rows])
    db = _line([(m["replicas"], m["db_transactions_per_s"]) for m in rows])
    guards_on, guards_off = _result("gateway-guards.json"), _result("gateway.json")
    assert guards_off["config"]["sovhub_env"] == ["SOVHUB_SAFETY__ENABLED=false"] and not guards_on["config"]["sovhub_env"]
    guards = guards_on["median"]["low"]["sovhub"]["cpu_ms_per_req"] - guards_off["median"]["low"]["sovhub"]["cpu_ms_per_req"]
    return {
        "cpu_ms_per_request": cpu[0] / rate, "cpu_core_per_replica": cpu[1] / 1000,
        "redis_per_request": redis[0] / rate, "redis_per_replica_s": redis[1],
        "db_per_request": db[0] / rate, "db_per_replica_s": db[1],
        # numbackends at the end of a run counts the benchmark's own connection too
        "connections_per_replica": math.ceil(max((m["db_connections"] - 1) / m["replicas"] for m in rows)),
        "guards_ms": guards,
        "flat_out_1": rows[0]["max_rps"], "flat_out_3": rows[2]["max_rps"],
    }


def sizing_rows() -> list[str]:
    m = measured()
    rows = []
    for users in (10_000, 100_000, 1_000_000):
        peak = users * REQUESTS_PER_USER * PEAK_HOUR_SHARE / 3600

        def replicas(ms: float, peak: float = peak) -> int:
            per_replica = (BUSY - m["cpu_core_per_replica"]) / (ms / 1000)
            return max(2, math.ceil(peak / per_replica) + SPARE)

        guarded = m["cpu_ms_per_request"] + m["guards_ms"]
        on, off = replicas(guarded), replicas(m["cpu_ms_per_request"])
        cores = on * m["cpu_core_per_replica"] + peak * guarded / 1000
        redis = peak * m["redis_per_request"] + on * m["redis_per_replica_s"]
        db = peak * m["db_per_request"] + on * m["db_per_replica_s"]
        rows.append(f"| {users:,} | {peak:.0f} | {on} ({off}) | {cores:.2f} cores | {redis:,.0f} | {db:,.0f} | "
                    f"{m['connections_per_replica'] * on} ({POOL_BOUND * on}) | {users * REQUESTS_PER_USER:,} | "
                    f"{peak * ANSWER_TOKENS:,.0f} |")
    return rows


def test_the_sizing_table_is_the_projection_of_the_result_files() -> None:
    table = [line for line in _section().splitlines() if line.startswith("| 1")]
    assert table == sizing_rows()


def test_the_sizing_sections_figures_are_the_fitted_ones_and_name_their_files() -> None:
    m = measured()
    text = " ".join(_section().split())
    saturation = _result("replicas-saturation.json")
    assert f"`bench/results/replicas-saturation.json`, commit {saturation['machine']['sovhub_commit']}" in text
    assert f"at a fixed {saturation['args']['rate']:g} RPS" in text
    for figure in (f"{m['cpu_ms_per_request']:.2f} ms per request", f"{m['cpu_core_per_replica']:.3f} core per replica",
                   f"{m['redis_per_request']:.1f} commands per request", f"{m['redis_per_replica_s']:.1f} per replica per second",
                   f"{m['db_per_request']:.2f} transactions per request", f"{m['db_per_replica_s']:.0f} per replica per second",
                   f"{m['connections_per_replica']} per replica", f"{m['guards_ms']:.1f} ms per request",
                   f"{m['flat_out_1']:.0f} RPS flat out", f"3 replicas {m['flat_out_3']:.0f}"):
        assert f"**{figure}**" in text or figure in text, figure
    guarded = m["cpu_ms_per_request"] + m["guards_ms"]
    per_on = (BUSY - m["cpu_core_per_replica"]) / (guarded / 1000)
    per_off = (BUSY - m["cpu_core_per_replica"]) / (m["cpu_ms_per_request"] / 1000)
    assert (f"(0.6 − {m['cpu_core_per_replica']:.3f}) / ({m['cpu_ms_per_request']:.2f} ms + {m['guards_ms']:.1f} ms) "
            f"= {per_on:.0f} RPS with the guards on, {per_off:.0f} with them off") in text
    assert f"users × {REQUESTS_PER_USER} × {PEAK_HOUR_SHARE} / 3600" in text and f"{ANSWER_TOKENS} answer tokens" in text


def test_the_fleet_exactness_figures_are_the_balancer_tests_constants() -> None:
    from tests.fleet import one_hub, test_balancer

    text = " ".join(OPERATIONS.split("**Limits, credits and the audit chain are the hub's.**")[1].split("\n\n")[0].split())
    clients, budget = test_balancer.CLIENTS, one_hub.TOKENS_EACH * one_hub.BUDGET_REQUESTS
    for figure in (f"rpm of {one_hub.RPM} serves exactly {one_hub.RPM} of {2 * one_hub.RPM} requests",
                   f"token limit of {budget} ({one_hub.BUDGET_REQUESTS} requests of exactly {one_hub.TOKENS_EACH} "
                   f"tokens) sent as {3 * one_hub.BUDGET_REQUESTS} requests by {clients} clients at once admits "
                   f"exactly {one_hub.BUDGET_REQUESTS} and meters exactly {budget} tokens",
                   f"a grant of {one_hub.PAID_GRANT} credits, {3 * one_hub.PAID_GRANT} one-credit requests by "
                   f"{clients} clients at once: exactly {one_hub.PAID_GRANT} answered",
                   f"{test_balancer.AUDITED} API keys created at once"):
        assert figure in text, figure
