"""Carbon-aware planning: deterministic with a forecast file; the plan, its reason and the emissions saved."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from sovhub.batches.schedule import plan_lines
from sovhub.energy.intensity import IntensityPoint, parse_csv, parse_forecast

from .conftest import chat_line, upload

NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


def hourly(values: list[float], start: datetime) -> list[IntensityPoint]:
    return [IntensityPoint(start + timedelta(hours=i), v) for i, v in enumerate(values)]


def test_lines_go_to_the_greenest_hours_before_the_deadline() -> None:
    points = hourly([400, 300, 50, 60, 500, 20], NOW.replace(minute=0))
    plan = plan_lines(list(range(1, 11)), points, now=NOW, deadline=NOW + timedelta(hours=4),
                      line_seconds=1.0, lines_per_second_cap=5 / 3600, wh_per_line=1.0, source="t")
    # 5 lines an hour: the 50 and 60 g hours hold all 10; the 20 g hour is after the deadline
    assert [(w["g_per_kwh"], w["lines"]) for w in plan.summary["windows"]] == [(50, 5), (60, 5)]
    assert set(plan.not_before.values()) == {NOW.replace(minute=0) + timedelta(hours=2),
                                             NOW.replace(minute=0) + timedelta(hours=3)}
    # at once: this half hour (400 g: 2 lines), then 300 g (5) and 50 g (3)
    assert plan.summary["run_at_once_co2e_g"] == pytest.approx((2 * 400 + 5 * 300 + 3 * 50) / 1000)
    assert plan.summary["estimated_co2e_g"] == pytest.approx((5 * 50 + 5 * 60) / 1000)
    assert plan.summary["saved_co2e_g"] > 0 and plan.summary["shifted_lines"] == 10
    again = plan_lines(list(range(1, 11)), points, now=NOW, deadline=NOW + timedelta(hours=4), line_seconds=1.0,
                       lines_per_second_cap=5 / 3600, wh_per_line=1.0, source="t")
    assert again.not_before == plan.not_before  # deterministic


def test_too_little_room_runs_at_once() -> None:
    points = hourly([400, 50], NOW.replace(minute=0))
    plan = plan_lines(list(range(100)), points, now=NOW, deadline=NOW + timedelta(hours=1, minutes=30),
                      line_seconds=1, lines_per_second_cap=1 / 3600, wh_per_line=1, source="t")
    assert plan.summary["strategy"] == "at_once" and plan.not_before == {}
    assert "fewer than 100" in plan.summary["reason"]


def test_a_forecast_that_misses_the_window_runs_at_once() -> None:
    stale = hourly([10, 10], NOW - timedelta(days=3))
    plan = plan_lines([1], stale, now=NOW, deadline=NOW + timedelta(hours=20), line_seconds=1,
                      lines_per_second_cap=1, wh_per_line=1, source="t")
    assert plan.summary["strategy"] == "at_once" and "does not cover" in plan.summary["reason"]


def test_electricitymaps_and_csv_forecasts_parse_alike() -> None:
    em = {"zone": "DE", "forecast": [{"carbonIntensity": 313, "datetime": "2026-03-01T10:00:00.000Z"},
                                     {"carbonIntensity": 120, "datetime": "2026-03-01T11:00:00.000Z"}],
          "updatedAt": "2026-03-01T09:51:00.000Z"}
    csv_text = "datetime,carbon_intensity\n2026-03-01T10:00:00Z,313\n2026-03-01T11:00:00Z,120\n"
    assert parse_forecast(json.dumps(em)) == parse_csv(csv_text)
    assert parse_forecast(json.dumps(em))[1] == IntensityPoint(datetime(2026, 3, 1, 11, tzinfo=UTC), 120.0)
    from sovhub.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_csv("when,value\n1,2\n")
    with pytest.raises(ConfigError):
        parse_forecast('{"zone": "DE"}')


def _forecast(data_dir: Path) -> dict[str, Any]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    values = [450, 420, 30, 400] + [380] * 20
    lines = ["datetime,carbon_intensity"] + [f"{(start + timedelta(hours=i)).isoformat()},{v}"
                                             for i, v in enumerate(values)]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "forecast.csv").write_text("\n".join(lines) + "\n")
    return {"start": start}


@pytest.fixture
def settings(data_dir: Path):  # noqa: ANN201
    from tests.conftest import make_settings

    _forecast(data_dir)
    return make_settings(data_dir, safety={"enabled": False}, batch={"poll_interval_s": 0.05},
                         energy={"forecast_file": "forecast.csv"})


def test_a_batch_waits_for_the_green_hour_and_shows_its_plan(sdk: openai.OpenAI, app_client: TestClient) -> None:
    created = sdk.batches.create(input_file_id=upload(sdk, [chat_line(f"r{i}", "hi") for i in range(4)]),
                                 endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 30
    while sdk.batches.retrieve(created.id).status == "validating" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    batch = sdk.batches.retrieve(created.id)
    assert batch.status == "in_progress" and batch.request_counts and batch.request_counts.completed == 0
    plan = app_client.get(f"/hub/v1/batches/{created.id}/schedule").json()
    assert plan["strategy"] == "greenest_windows" and plan["shifted_lines"] == 4
    assert [w["g_per_kwh"] for w in plan["windows"]] == [30]
    start = datetime.fromisoformat(plan["windows"][0]["start"])
    assert start == datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    assert plan["saved_co2e_g"] > 0 and "30 gCO2e/kWh" in plan["reason"]


def test_no_source_starts_at_once_and_says_why(data_dir: Path, hub, fake_plugin, api_key) -> None:  # noqa: ANN001
    from sovhub.app import create_app
    from tests.conftest import add_fake_backend

    (data_dir / "forecast.csv").unlink()
    add_fake_backend(hub, "fake1", ["echo"])
    hub.settings.energy.forecast_file = None
    with TestClient(create_app(hub), headers={"authorization": f"Bearer {api_key}"}) as client:
        sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=api_key, http_client=client, max_retries=0)
        created = sdk.batches.create(input_file_id=upload(sdk, [chat_line("a", "hi")]),
                                     endpoint="/v1/chat/completions", completion_window="24h")
        from .conftest import wait_for

        assert wait_for(sdk, created.id).status == "completed"
        plan = client.get(f"/hub/v1/batches/{created.id}/schedule").json()
        assert plan["strategy"] == "at_once" and "no intensity forecast" in plan["reason"]
        other = client.get("/hub/v1/batches/batch_nope/schedule")
        assert other.status_code == 404
