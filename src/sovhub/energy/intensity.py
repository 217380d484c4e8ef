"""Grid carbon intensity: points in time with gCO2e/kWh and renewable share, from a file or a fixed value.

Formats read:

- Electricity Maps v3 (``/v3/carbon-intensity/forecast``, ``/latest``, ``/history``): JSON with
  ``forecast`` or ``history`` lists of ``{"datetime", "carbonIntensity"}``, or one such object;
  ``/v3/power-breakdown/latest``'s ``renewablePercentage`` is read where present.
- CSV from a grid operator: a header naming a time column (``datetime``, ``timestamp``, ``time``
  or ``from``), an intensity column (``carbon_intensity``, ``carbonIntensity``, ``intensity``,
  ``gco2_per_kwh`` or ``forecast``), and optionally ``renewable_share`` (0..1) or
  ``renewable_percentage`` (0..100).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError

__all__ = ["IntensityPoint", "parse_csv", "parse_electricitymaps", "parse_forecast", "point_at"]

_TIME = ("datetime", "timestamp", "time", "from", "start")
_INTENSITY = ("carbon_intensity", "carbonintensity", "intensity", "gco2_per_kwh", "forecast", "actual")


@dataclass(frozen=True, slots=True)
class IntensityPoint:
    at: datetime
    g_per_kwh: float
    renewable_share: float | None = None


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_electricitymaps(data: Any) -> list[IntensityPoint]:
    items: list[Any]
    if isinstance(data, dict) and isinstance(data.get("forecast"), list):
        items = data["forecast"]
    elif isinstance(data, dict) and isinstance(data.get("history"), list):
        items = data["history"]
    elif isinstance(data, dict) and "carbonIntensity" in data:
        items = [data]
    else:
        raise ConfigError("not an Electricity Maps v3 carbon-intensity document (no forecast/history/carbonIntensity)")
    points = []
    for item in items:
        if not isinstance(item, dict) or item.get("carbonIntensity") is None or not item.get("datetime"):
            continue
        share = item.get("renewablePercentage")
        points.append(IntensityPoint(_when(str(item["datetime"])), float(item["carbonIntensity"]),
                                     float(share) / 100 if share is not None else None))
    return sorted(points, key=lambda p: p.at)


def parse_csv(text: str) -> list[IntensityPoint]:
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    time_col = next((columns[c] for c in _TIME if c in columns), None)
    value_col = next((columns[c] for c in _INTENSITY if c in columns), None)
    if time_col is None or value_col is None:
        raise ConfigError(f"intensity CSV needs a time column ({', '.join(_TIME)}) and an intensity column "
                          f"({', '.join(_INTENSITY)}); found {', '.join(columns) or 'none'}")
    share_col = columns.get("renewable_share")
    pct_col = columns.get("renewable_percentage")
    points = []
    for n, row in enumerate(reader, 2):
        try:
            share: float | None = None
            if share_col and row.get(share_col):
                share = float(row[share_col])
            elif pct_col and row.get(pct_col):
                share = float(row[pct_col]) / 100
            points.append(IntensityPoint(_when(row[time_col]), float(row[value_col]), share))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"intensity CSV line {n}: {exc}") from exc
    return sorted(points, key=lambda p: p.at)


def parse_forecast(text: str) -> list[IntensityPoint]:
    """Either format, told apart by its first character."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return parse_electricitymaps(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"intensity JSON is not valid: {exc}") from exc
    return parse_csv(text)


def point_at(points: list[IntensityPoint], when: datetime) -> IntensityPoint | None:
    """The point in force at `when` (the latest at or before it), else the first after it."""
    if not points:
        return None
    best = None
    for point in points:
        if point.at <= when:
            best = point
        else:
            break
    return best or points[0]
