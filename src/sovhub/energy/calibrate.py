"""`sovhub energy calibrate`: measure the power of one busy core with RAPL, once, where RAPL is readable.

One core is kept busy for a while; package joules over the machine's busy CPU-seconds give the
watts one busy core draws (its share of the package's idle power included). The figure is written
to the data dir and used while serving when RAPL cannot be read live (containers often cannot).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.base import utcnow
from .rapl import RaplReader, read_cpu_time

__all__ = ["calibrate"]


def _spin(seconds: float) -> int:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


def calibrate(data_dir: Path, rapl_dir: Path, proc_stat: Path, seconds: float = 10.0,
              out_name: str = "energy-calibration.json") -> dict[str, Any]:
    rapl = RaplReader(rapl_dir)
    if not rapl.readable():
        raise ConfigError(f"RAPL is not readable at {rapl_dir}: nothing to calibrate with. Set "
                          "energy.cpu_watts_per_core, or leave the fallback (half the TDP over the cores)")
    before = read_cpu_time(proc_stat)
    rapl.joules()
    _spin(seconds)
    joules = rapl.joules()
    after = read_cpu_time(proc_stat)
    if joules is None or before is None or after is None or after.busy_s <= before.busy_s:
        raise ConfigError("the RAPL counter or the CPU time did not advance; run it again on an idle machine")
    result = {"watts_per_core": joules / (after.busy_s - before.busy_s), "joules": joules,
              "busy_cpu_s": after.busy_s - before.busy_s, "seconds": seconds, "rapl_dir": str(rapl_dir),
              "measured_at": utcnow().isoformat()}
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / out_name).write_text(json.dumps(result, indent=2) + "\n")
    return result
