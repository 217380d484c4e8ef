"""Energy and carbon per request, assigned when usage records are written (once per flush interval).

Each interval's energy is measured (or estimated) per source and shared among the interval's
requests of that source by tokens (prompt + completion, at least 1 each):

- in-process work (the embedded model, embeddings, moderation): the process's CPU-seconds x the
  power of one busy core: measured live from RAPL over the interval (package joules / machine
  busy CPU-seconds, method ``rapl``), else a calibration (``sovhub energy calibrate``,
  ``calibrated``), a configured figure (``configured``), or CodeCarbon's fallback of half the
  TDP over the cores (``tdp``);
- a GPU model server: its energy counter's increase over the interval (DCGM exporter,
  ``gpu-metrics``), else a configured J/token (``j-per-token``); otherwise ``unknown``.

Energy is multiplied by the site's PUE. Carbon uses the grid intensity in force at the request's
time (market-based: the contracted renewable share counts as zero-emission).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.registry import BackendRegistry
from ..errors import ConfigError
from ..observability import Metrics
from .intensity import IntensityPoint, parse_forecast, point_at
from .rapl import RaplReader, read_cpu_time

if TYPE_CHECKING:
    from ..hub import Hub
    from ..metering import Usage

__all__ = ["CALIBRATION_FILE", "EnergyAccountant", "Grid", "process_cpu_seconds"]

log = logging.getLogger("sovhub.energy")

CALIBRATION_FILE = "energy-calibration.json"


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class Grid:
    g_per_kwh: float | None
    renewable_share: float | None
    source: str


class EnergyAccountant:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings.energy
        self.rapl = RaplReader(Path(self.settings.rapl_dir))
        self._lock = threading.Lock()
        self._cpu_last = process_cpu_seconds()
        self._stat_last = read_cpu_time(Path(self.settings.proc_stat))
        self.rapl.joules()  # the baseline
        self.watts_per_core, self.cpu_method = self._static_core_power()
        #: Each GPU server's latest energy counter (joules), kept by the poll loop; and the part already assigned.
        self.gpu_latest: dict[str, float] = {}
        self._gpu_assigned: dict[str, float] = {}
        self.grid_latest: Grid | None = None
        self._grid_points: list[IntensityPoint] | None = None

    # --- power of one busy core, when RAPL is not read live ---

    def _static_core_power(self) -> tuple[float, str]:
        if self.settings.cpu_watts_per_core is not None:
            return self.settings.cpu_watts_per_core, "configured"
        path = self.hub.settings.data_dir / CALIBRATION_FILE
        if path.exists():
            try:
                return float(json.loads(path.read_text())["watts_per_core"]), "calibrated"
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring %s: %s", path, exc)
        cores = os.cpu_count() or 1
        return self.settings.cpu_tdp_watts * 0.5 / cores, "tdp"

    # --- grid ---

    def grid_at(self, when: datetime) -> Grid:
        s = self.settings
        if s.intensity == "fixed":
            return Grid(s.intensity_g_per_kwh, s.grid_renewable_share, "fixed")
        if s.intensity == "csv":
            if self._grid_points is None:
                self._grid_points = self._read_grid_file()
            point = point_at(self._grid_points, when)
            if point is None:
                return Grid(None, None, "csv")
            return Grid(point.g_per_kwh, point.renewable_share, "csv")
        if s.intensity == "electricitymaps":
            return self.grid_latest or Grid(None, None, "electricitymaps")
        return Grid(None, None, "none")

    def _read_grid_file(self) -> list[IntensityPoint]:
        name = self.settings.intensity_file
        if not name:
            raise ConfigError("energy.intensity = 'csv' needs energy.intensity_file")
        path = Path(name) if Path(name).is_absolute() else self.hub.settings.data_dir / name
        try:
            return parse_forecast(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the intensity file {path}: {exc}") from exc

    # --- per interval ---

    def _local(self, backend: str | None) -> bool:
        if backend is None:
            return True
        found = self.hub.services.get(BackendRegistry).get(backend) if BackendRegistry in self.hub.services else None
        return found is not None and not found.config.url

    def _cpu_interval(self) -> tuple[float, str]:
        """Joules of this process's CPU work since the last interval, and how they were obtained."""
        cpu = process_cpu_seconds()
        used, self._cpu_last = max(0.0, cpu - self._cpu_last), cpu
        stat = read_cpu_time(Path(self.settings.proc_stat))
        rapl_j = self.rapl.joules()
        busy = stat.busy_s - self._stat_last.busy_s if stat and self._stat_last else 0.0
        self._stat_last = stat
        if rapl_j is not None and busy > 0:
            return used * rapl_j / busy, "rapl"
        return used * self.watts_per_core, self.cpu_method

    def assign(self, batch: list[Usage]) -> None:
        """Fill energy_wh, co2e_g, renewable_share and energy_method of records not yet filled (a retried write
        keeps its figures)."""
        todo = [u for u in batch if u.energy_method is None]
        if not todo:
            return
        with self._lock:
            cpu_j, cpu_method = self._cpu_interval()
            joules: dict[int, float] = {}
            methods: dict[int, str] = {}
            groups: dict[str, list[Usage]] = defaultdict(list)
            local: list[Usage] = []
            for u in todo:
                if u.backend is not None and u.backend in self.settings.gpu_metrics:
                    groups[u.backend].append(u)
                elif u.backend is not None and u.backend in self.settings.joules_per_token:
                    joules[id(u)] = _tokens(u) * self.settings.joules_per_token[u.backend]
                    methods[id(u)] = "j-per-token"
                elif self._local(u.backend):
                    local.append(u)
                else:
                    methods[id(u)] = "unknown"
            _share(local, cpu_j, cpu_method, joules, methods)
            for backend, records in groups.items():
                latest = self.gpu_latest.get(backend)
                if latest is None:
                    for u in records:
                        methods[id(u)] = "unknown"
                    continue
                before = self._gpu_assigned.get(backend, latest)
                delta = latest - before if latest >= before else latest  # a counter reset: the server restarted
                self._gpu_assigned[backend] = latest
                _share(records, delta, "gpu-metrics", joules, methods)
        metrics = self.hub.services.get(Metrics) if Metrics in self.hub.services else None
        pue, contracted = self.settings.pue, self.settings.contracted_renewable_share
        for u in todo:
            u.energy_method = methods.get(id(u), "unknown")
            if id(u) not in joules:
                continue
            j = joules[id(u)] * pue
            u.energy_wh = j / 3600
            grid = self.grid_at(u.ts)
            if grid.g_per_kwh is not None:
                u.co2e_g = j / 3.6e6 * grid.g_per_kwh * (1 - contracted)
            if grid.renewable_share is not None or contracted:
                u.renewable_share = contracted + (1 - contracted) * (grid.renewable_share or 0.0)
            if metrics is not None:
                metrics.energy_joules.labels(u.backend or "local", u.model).inc(j)
                if u.co2e_g is not None:
                    metrics.co2e_grams.labels(u.backend or "local", u.model).inc(u.co2e_g)


def _tokens(u: Usage) -> int:
    return max(1, u.prompt_tokens + u.completion_tokens)


def _share(records: list[Usage], total_j: float, method: str, joules: dict[int, float],
           methods: dict[int, str]) -> None:
    tokens = sum(_tokens(u) for u in records)
    for u in records:
        joules[id(u)] = total_j * _tokens(u) / tokens if tokens else 0.0
        methods[id(u)] = method
