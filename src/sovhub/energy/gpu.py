"""GPU energy from a model server's Prometheus metrics (NVIDIA's DCGM exporter format).

``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` counts millijoules since the driver loaded, one series
per GPU; the server's energy is their sum. Only that metric is read; others are ignored.
"""

from __future__ import annotations

import re

__all__ = ["DCGM_ENERGY", "parse_dcgm_joules"]

DCGM_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(?P<value>[-+0-9.eE]+|NaN)(\s+\d+)?$")


def parse_dcgm_joules(text: str) -> float | None:
    """Total joules of every GPU in the exposition, or None when the metric is absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(DCGM_ENERGY):
            continue
        match = _LINE.match(line.strip())
        if match is None or match.group("name") != DCGM_ENERGY or match.group("value") == "NaN":
            continue
        total += float(match.group("value")) / 1000
        seen = True
    return total if seen else None
