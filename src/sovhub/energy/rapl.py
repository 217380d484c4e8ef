"""CPU energy from Intel/AMD RAPL counters in powercap's sysfs layout, and the machine's CPU time.

``<root>/intel-rapl:N/energy_uj`` (one per package; sub-zones ``intel-rapl:N:M`` are parts of it
and not added again) counts microjoules and wraps at ``max_energy_range_uj``. ``/proc/stat``'s
first line gives every core's busy time in clock ticks. Over an interval, joules per busy
CPU-second is the power one busy core draws, package overhead shared in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuTime", "RaplReader", "read_cpu_time"]

_PACKAGE = re.compile(r"^(intel-rapl|amd-rapl):\d+$")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class RaplReader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._last: dict[str, int] = {}

    def packages(self) -> list[Path]:
        try:
            return sorted(p for p in self.root.iterdir() if _PACKAGE.match(p.name) and (p / "energy_uj").exists())
        except OSError:
            return []

    def readable(self) -> bool:
        try:
            return bool(self.packages()) and all(os.access(p / "energy_uj", os.R_OK) for p in self.packages())
        except OSError:
            return False

    def joules(self) -> float | None:
        """Joules counted since the previous call (wraps handled); None when no counter is readable."""
        total = 0
        seen = False
        for package in self.packages():
            try:
                now = int((package / "energy_uj").read_text().strip())
                top = int((package / "max_energy_range_uj").read_text().strip()) \
                    if (package / "max_energy_range_uj").exists() else 0
            except (OSError, ValueError):
                return None
            seen = True
            before = self._last.get(package.name)
            self._last[package.name] = now
            if before is not None:
                total += now - before if now >= before else (top - before) + now
        return total / 1e6 if seen else None


@dataclass(frozen=True, slots=True)
class CpuTime:
    busy_s: float


def read_cpu_time(path: Path) -> CpuTime | None:
    """Busy CPU-seconds of the whole machine (user+nice+system+irq+softirq+steal) from /proc/stat."""
    try:
        first = path.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(x) for x in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return CpuTime((sum(values[:8]) - idle) / _TICKS)
