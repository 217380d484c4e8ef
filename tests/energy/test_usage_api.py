"""Every request's energy and carbon reach the usage API (rows, CSV) and Prometheus, by backend and model."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.hub import Hub
from sovhub.settings import Settings
from sovhub.store.tables import UsageRecord
from tests.conftest import make_settings


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, safety={"enabled": False}, usage_flush_interval_s=0.05,
                         energy={"cpu_watts_per_core": 10.0, "rapl_dir": str(data_dir / "no-rapl"),
                                 "intensity": "fixed", "intensity_g_per_kwh": 250.0, "grid_renewable_share": 0.3,
                                 "pue": 1.2})


def test_usage_rows_and_metrics_carry_energy(app_client: TestClient, hub: Hub) -> None:
    import time

    for _ in range(3):
        r = app_client.post("/v1/chat/completions",
                            json={"model": "echo", "messages": [{"role": "user", "content": "one two three"}]})
        assert r.status_code == 200
    deadline = time.monotonic() + 10
    rows: list[UsageRecord] = []
    while time.monotonic() < deadline:
        with hub.db.session() as s:
            rows = list(s.scalars(select(UsageRecord)))
        if len(rows) == 3:
            break
        time.sleep(0.05)
    assert len(rows) == 3
    assert {r.energy_method for r in rows} == {"configured"}
    assert all(r.energy_wh is not None and r.energy_wh >= 0 for r in rows)
    total_wh = sum(r.energy_wh or 0 for r in rows)
    assert total_wh > 0  # the process used CPU for them
    assert sum(r.co2e_g or 0 for r in rows) == pytest.approx(total_wh / 1000 * 250)
    assert [r.renewable_share for r in rows] == [pytest.approx(0.3)] * 3
    usage = app_client.get("/hub/v1/organization/usage").json()["data"]
    assert len(usage) == 1 and usage[0]["requests"] == 3
    assert usage[0]["energy_wh"] == pytest.approx(total_wh, rel=1e-3)
    assert usage[0]["co2e_g"] == pytest.approx(total_wh / 1000 * 250, rel=1e-3)
    assert usage[0]["renewable_share"] == pytest.approx(0.3)
    assert usage[0]["sci_g_per_1k_tokens"] == pytest.approx(usage[0]["co2e_g"] * 1000 / usage[0]["total_tokens"],
                                                            rel=1e-3)
    csv = app_client.get("/hub/v1/organization/usage", params={"format": "csv"}).text
    assert csv.splitlines()[0].endswith("energy_wh,co2e_g,renewable_share,sci_g_per_1k_tokens")
    from sovhub.observability import Metrics

    metrics = hub.services.get(Metrics)
    joules = metrics.energy_joules.labels("fake1", "echo")._value.get()
    assert joules == pytest.approx(total_wh * 3600, rel=1e-6)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert 'sovhub_energy_joules_total{backend="fake1",model="echo"}' in text
    assert 'sovhub_co2e_grams_total{backend="fake1",model="echo"}' in text
