"""Energy per request from a RAPL-format directory, a calibration, a DCGM endpoint served here, J/token; carbon
from fixed, CSV and Electricity Maps sources; the usage API, Prometheus and SCI."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sovhub.energy import accountant as accountant_module
from sovhub.energy.accountant import EnergyAccountant
from sovhub.energy.gpu import parse_dcgm_joules
from sovhub.energy.rapl import RaplReader, read_cpu_time
from sovhub.hub import Hub, build_hub
from sovhub.metering import Usage
from tests.conftest import make_settings

TICKS = 100


class FakeMachine:
    """A powercap tree and a /proc/stat the test moves forward."""

    def __init__(self, root: Path) -> None:
        self.rapl = root / "powercap"
        self.stat = root / "stat"
        for package in ("intel-rapl:0", "intel-rapl:1"):
            (self.rapl / package).mkdir(parents=True)
            (self.rapl / package / "name").write_text(f"package-{package[-1]}\n")
            (self.rapl / package / "max_energy_range_uj").write_text("262143328850\n")
            (self.rapl / package / "energy_uj").write_text("1000000\n")
        sub = self.rapl / "intel-rapl:0" / "intel-rapl:0:0"
        sub.mkdir()
        (sub / "energy_uj").write_text("5\n")  # a sub-zone: part of the package, never added again
        (self.rapl / "intel-rapl-mmio:0").mkdir()
        self.uj = {"intel-rapl:0": 1_000_000, "intel-rapl:1": 1_000_000}
        self.busy_ticks = 0
        self.write()

    def write(self) -> None:
        for package, value in self.uj.items():
            (self.rapl / package / "energy_uj").write_text(f"{value}\n")
        # cpu user nice system idle iowait irq softirq steal
        self.stat.write_text(f"cpu  {self.busy_ticks} 0 0 5000 7 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")

    def advance(self, joules: float, busy_s: float) -> None:
        for package in self.uj:
            self.uj[package] += int(joules / 2 * 1e6)
        self.busy_ticks += int(busy_s * TICKS)
        self.write()


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path / "sys")


def _usage(tokens: int, backend: str | None = None, model: str = "m", **kw: Any) -> Usage:
    return Usage(request_id=f"r{tokens}", endpoint="chat", model=model, org_id=1, key_id=1, backend=backend,
                 prompt_tokens=tokens, completion_tokens=0, **kw)


@pytest.fixture
def cpu_seconds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The process's CPU time, as the test says (the real one moves with whatever else runs)."""
    value = [100.0]
    monkeypatch.setattr(accountant_module, "process_cpu_seconds", lambda: value[0])
    monkeypatch.setattr("sovhub.energy.rapl._TICKS", TICKS)
    return value


def _hub(data_dir: Path, machine: FakeMachine, **energy: Any) -> Hub:
    return build_hub(make_settings(data_dir, energy={"rapl_dir": str(machine.rapl), "proc_stat": str(machine.stat),
                                                     **energy}))


def test_rapl_reader_sums_packages_and_handles_wrap(machine: FakeMachine) -> None:
    reader = RaplReader(machine.rapl)
    assert [p.name for p in reader.packages()] == ["intel-rapl:0", "intel-rapl:1"] and reader.readable()
    assert reader.joules() == 0.0  # baseline
    machine.advance(joules=30, busy_s=1)
    assert reader.joules() == pytest.approx(30)
    machine.uj["intel-rapl:0"] = 262143328850 - 1_000_000  # near the top: the counter wraps next
    machine.write()
    reader.joules()
    machine.uj["intel-rapl:0"] = 4_000_000
    machine.write()
    assert reader.joules() == pytest.approx(5.0)
    assert read_cpu_time(machine.stat) is not None
    assert RaplReader(machine.rapl / "nowhere").joules() is None


def test_cpu_energy_from_live_rapl_shared_by_tokens(data_dir: Path, machine: FakeMachine,
                                                    cpu_seconds: list[float]) -> None:
    hub = _hub(data_dir, machine, intensity="fixed", intensity_g_per_kwh=300, grid_renewable_share=0.4, pue=1.5)
    try:
        acc = hub.services.get(EnergyAccountant)
        # the machine was busy 4 CPU-s for 40 J (10 W per busy core); this process used 2 CPU-s of it
        machine.advance(joules=40, busy_s=4)
        cpu_seconds[0] += 2
        batch = [_usage(30), _usage(10)]
        acc.assign(batch)
        assert [u.energy_method for u in batch] == ["rapl", "rapl"]
        # 2 CPU-s x 10 W = 20 J, x PUE 1.5 = 30 J, shared 3:1
        assert batch[0].energy_wh == pytest.approx(22.5 / 3600) and batch[1].energy_wh == pytest.approx(7.5 / 3600)
        assert batch[0].co2e_g == pytest.approx(22.5 / 3.6e6 * 300)
        assert batch[0].renewable_share == pytest.approx(0.4)
        again = batch[0].energy_wh
        acc.assign(batch)  # a retried write keeps its figures
        assert batch[0].energy_wh == again
    finally:
        hub.close()


def test_calibration_then_configured_then_tdp_fallback(data_dir: Path, machine: FakeMachine,
                                                       cpu_seconds: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    from sovhub.energy.calibrate import calibrate

    monkeypatch.setattr("sovhub.energy.calibrate._spin", lambda s: machine.advance(joules=24, busy_s=2))
    result = calibrate(data_dir, machine.rapl, machine.stat, seconds=1)
    assert result["watts_per_core"] == pytest.approx(12.0)
    (machine.rapl / "intel-rapl:0" / "energy_uj").unlink()  # RAPL unreadable while serving (a container)
    (machine.rapl / "intel-rapl:1" / "energy_uj").unlink()
    hub = _hub(data_dir, machine)
    try:
        acc = hub.services.get(EnergyAccountant)
        assert (acc.watts_per_core, acc.cpu_method) == (pytest.approx(12.0), "calibrated")
        cpu_seconds[0] += 1
        batch = [_usage(5)]
        acc.assign(batch)
        assert batch[0].energy_method == "calibrated" and batch[0].energy_wh == pytest.approx(12 / 3600)
        assert batch[0].co2e_g is None  # no intensity source: energy only
    finally:
        hub.close()
    hub = _hub(data_dir, machine, cpu_watts_per_core=7.0)
    assert hub.services.get(EnergyAccountant).cpu_method == "configured"
    hub.close()
    (data_dir / "energy-calibration.json").unlink()
    hub = _hub(data_dir, machine, cpu_tdp_watts=64)
    import os

    acc = hub.services.get(EnergyAccountant)
    assert acc.cpu_method == "tdp" and acc.watts_per_core == pytest.approx(32 / (os.cpu_count() or 1))
    hub.close()


def test_calibrate_refuses_without_rapl(tmp_path: Path) -> None:
    from sovhub.energy.calibrate import calibrate
    from sovhub.errors import ConfigError

    with pytest.raises(ConfigError, match="not readable"):
        calibrate(tmp_path, tmp_path / "none", tmp_path / "stat", seconds=1)


DCGM = """# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0",UUID="GPU-a",device="nvidia0",Hostname="gpu1"}} {a}
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="1",UUID="GPU-b",device="nvidia1",Hostname="gpu1"}} {b}
DCGM_FI_DEV_POWER_USAGE{{gpu="0",UUID="GPU-a"}} 250.5
"""


class _Exporter(BaseHTTPRequestHandler):
    counters = {"a": 1_000_000.0, "b": 2_000_000.0}

    def do_GET(self) -> None:  # noqa: N802
        body = DCGM.format(**{k: int(v) for k, v in self.counters.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()


def test_dcgm_parse() -> None:
    assert parse_dcgm_joules(DCGM.format(a=1500, b=500)) == pytest.approx(2.0)
    assert parse_dcgm_joules("DCGM_FI_DEV_POWER_USAGE 3\n") is None


async def test_gpu_energy_from_a_dcgm_endpoint_shared_by_tokens(data_dir: Path, machine: FakeMachine,
                                                                 exporter: str, cpu_seconds: list[float]) -> None:
    from sovhub.egress import make_guard, make_http_client
    from sovhub.energy.sources import poll_gpus

    hub = _hub(data_dir, machine, gpu_metrics={"gpu1": exporter}, gpu_poll_s=0.05, joules_per_token={"api": 0.5},
               intensity="fixed", intensity_g_per_kwh=100)
    try:
        acc = hub.services.get(EnergyAccountant)
        http = make_http_client(hub, make_guard(hub, [exporter]))
        import asyncio

        task = asyncio.create_task(poll_gpus(hub, acc, http))
        for _ in range(100):
            if acc.gpu_latest:
                break
            await asyncio.sleep(0.02)
        assert acc.gpu_latest["gpu1"] == pytest.approx(3000.0)  # (1e6 + 2e6) mJ
        acc.assign([_usage(1, backend="gpu1")])  # the first interval: the counter's baseline
        _Exporter.counters["a"] += 90_000  # 90 J on GPU 0, 30 J on GPU 1 during the next interval
        _Exporter.counters["b"] += 30_000
        await asyncio.sleep(0.2)
        batch = [_usage(100, backend="gpu1", model="llama"), _usage(300, backend="gpu1", model="llama"),
                 _usage(8, backend="api")]
        acc.assign(batch)
        assert [u.energy_method for u in batch] == ["gpu-metrics", "gpu-metrics", "j-per-token"]
        assert batch[0].energy_wh == pytest.approx(30 / 3600) and batch[1].energy_wh == pytest.approx(90 / 3600)
        assert batch[2].energy_wh == pytest.approx(4 / 3600)
        assert batch[1].co2e_g == pytest.approx(90 / 3.6e6 * 100)
        task.cancel()
        await http.aclose()
    finally:
        hub.close()


def test_unknown_remote_backend_is_marked_unknown(data_dir: Path, machine: FakeMachine,
                                                  cpu_seconds: list[float]) -> None:
    hub = _hub(data_dir, machine)
    try:
        batch = [_usage(5, backend="somewhere")]
        hub.services.get(EnergyAccountant).assign(batch)
        assert batch[0].energy_method == "unknown" and batch[0].energy_wh is None
    finally:
        hub.close()


def test_grid_intensity_from_csv_at_the_requests_time_and_contracted_share(
    data_dir: Path, machine: FakeMachine, cpu_seconds: list[float]
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "grid.csv").write_text("datetime,carbon_intensity,renewable_percentage\n"
                                       "2026-03-01T00:00:00Z,400,20\n2026-03-01T12:00:00Z,100,80\n")
    hub = _hub(data_dir, machine, intensity="csv", intensity_file="grid.csv", contracted_renewable_share=0.5,
               cpu_watts_per_core=3600.0)
    try:
        acc = hub.services.get(EnergyAccountant)
        (machine.rapl / "intel-rapl:0" / "energy_uj").unlink()
        cpu_seconds[0] += 2
        night = _usage(1, ts=datetime(2026, 3, 1, 6, tzinfo=UTC))
        noon = _usage(1, ts=datetime(2026, 3, 1, 13, tzinfo=UTC))
        acc.assign([night, noon])
        assert night.energy_wh == pytest.approx(1.0)  # 1 CPU-s x 3600 W = 1 Wh each
        assert night.co2e_g == pytest.approx(0.001 * 400 * 0.5) and noon.co2e_g == pytest.approx(0.001 * 100 * 0.5)
        assert night.renewable_share == pytest.approx(0.5 + 0.5 * 0.2)
        assert noon.renewable_share == pytest.approx(0.5 + 0.5 * 0.8)
    finally:
        hub.close()


class _ElectricityMaps(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append((self.path, self.headers.get("auth-token")))
        if self.path.startswith("/v3/carbon-intensity/latest"):
            data = {"zone": "DE", "carbonIntensity": 321, "datetime": "2026-03-01T10:00:00.000Z",
                    "updatedAt": "2026-03-01T09:51:00.000Z", "emissionFactorType": "lifecycle"}
        else:
            data = {"zone": "DE", "renewablePercentage": 55, "fossilFreePercentage": 60}
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_electricitymaps_through_the_egress_guard(data_dir: Path, machine: FakeMachine) -> None:
    from sovhub.egress import make_guard, make_http_client
    from sovhub.energy.plugin import sovhub_egress_hosts
    from sovhub.energy.sources import read_electricitymaps
    from sovhub.errors import EgressRefused

    server = ThreadingHTTPServer(("127.0.0.1", 0), _ElectricityMaps)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    hub = _hub(data_dir, machine, intensity="electricitymaps", electricitymaps_url=url, electricitymaps_zone="DE",
               electricitymaps_token="tok")
    try:
        assert sovhub_egress_hosts(hub) == ["127.0.0.1"]
        http = make_http_client(hub, make_guard(hub, []))
        grid = await read_electricitymaps(hub, http)
        assert (grid.g_per_kwh, grid.renewable_share) == (321.0, 0.55)
        assert _ElectricityMaps.seen[0] == ("/v3/carbon-intensity/latest?zone=DE", "tok")
        await http.aclose()
        closed = make_http_client(hub, make_guard(hub, ["http://backend.example"]))
        hub.settings.energy.electricitymaps_url = "http://elsewhere.example"
        with pytest.raises(EgressRefused):
            await read_electricitymaps(hub, closed)
        await closed.aclose()
    finally:
        hub.close()
        server.shutdown()
