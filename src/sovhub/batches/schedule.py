"""Carbon-aware planning: a batch's lines go to the greenest hours of the forecast that still end in its window.

The forecast is split into slots (one per point, up to the next point). Each slot can take
``seconds x capacity share x concurrency / seconds per line`` lines. The greenest slots are picked
until they hold every line, within the window less a safety margin; lines then run in input
order, slot by slot in time order, each slot's lines no earlier than its start. Emissions are
estimated for the plan and for running everything at once (the same lines, slots in time order
from now), and the difference is reported as saved. Without a forecast, lines start at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..energy.intensity import IntensityPoint, parse_forecast
from ..errors import ConfigError
from ..store.base import as_utc, utcnow
from .tables import BatchRow

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["Plan", "Scheduler", "Slot", "plan_lines"]


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime
    g_per_kwh: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass
class Plan:
    not_before: dict[int, datetime] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _slots(points: list[IntensityPoint], now: datetime, deadline: datetime) -> list[Slot]:
    if not points:
        return []
    step = (points[1].at - points[0].at) if len(points) > 1 else timedelta(hours=1)
    slots = []
    for i, point in enumerate(points):
        end = points[i + 1].at if i + 1 < len(points) else point.at + step
        start, end = max(point.at, now), min(end, deadline)
        if end > start:
            slots.append(Slot(start, end, point.g_per_kwh))
    return slots


def _emissions(assignment: list[tuple[Slot, int]], wh_per_line: float) -> float:
    return sum(n * wh_per_line / 1000 * slot.g_per_kwh for slot, n in assignment)


def _fill(slots: list[Slot], lines: int, per_second: float) -> list[tuple[Slot, int]]:
    out, left = [], lines
    for slot in slots:
        if left <= 0:
            break
        n = min(left, max(1, int(slot.seconds * per_second)))
        out.append((slot, n))
        left -= n
    if left > 0 and out:
        slot, n = out[-1]
        out[-1] = (slot, n + left)
    return out


def plan_lines(line_nos: list[int], points: list[IntensityPoint], *, now: datetime, deadline: datetime,
               line_seconds: float, lines_per_second_cap: float, wh_per_line: float, source: str) -> Plan:
    """The plan for these lines (pure: the same inputs give the same plan)."""
    base: dict[str, Any] = {"source": source, "planned_at": now.isoformat(), "deadline": deadline.isoformat(),
                            "lines": len(line_nos), "line_seconds_estimate": line_seconds,
                            "wh_per_line_estimate": wh_per_line}
    slots = _slots(points, now, deadline)
    covered = sum(s.seconds for s in slots)
    if not slots or slots[0].start > now + timedelta(hours=1) or covered < (deadline - now).total_seconds() * 0.5:
        return Plan(summary={**base, "strategy": "at_once",
                             "reason": "the forecast does not cover this batch's window: lines run at once",
                             "windows": []})
    per_second = lines_per_second_cap
    once = _fill(slots, len(line_nos), per_second)
    capacity = sum(max(1, int(s.seconds * per_second)) for s in slots)
    if capacity < len(line_nos):
        return Plan(summary={**base, "strategy": "at_once", "windows": [_window(s, n) for s, n in once],
                             "reason": f"the window holds about {capacity} lines at the capacity batches may take, "
                                       f"fewer than {len(line_nos)}: lines run at once to finish what they can",
                             "estimated_co2e_g": round(_emissions(once, wh_per_line), 6),
                             "run_at_once_co2e_g": round(_emissions(once, wh_per_line), 6), "saved_co2e_g": 0.0})
    chosen: list[Slot] = []
    held = 0
    for slot in sorted(slots, key=lambda s: (s.g_per_kwh, s.start)):
        if held >= len(line_nos):
            break
        chosen.append(slot)
        held += max(1, int(slot.seconds * per_second))
    chosen.sort(key=lambda s: s.start)
    planned = _fill(chosen, len(line_nos), per_second)
    not_before: dict[int, datetime] = {}
    i = 0
    for slot, n in planned:
        for line_no in line_nos[i:i + n]:
            if slot.start > now:
                not_before[line_no] = slot.start
        i += n
    at_once_g, planned_g = _emissions(once, wh_per_line), _emissions(planned, wh_per_line)
    mean = planned_g / (len(line_nos) * wh_per_line / 1000) if line_nos and wh_per_line else 0.0
    mean_once = at_once_g / (len(line_nos) * wh_per_line / 1000) if line_nos and wh_per_line else 0.0
    shifted = sum(n for slot, n in planned if slot.start > now)
    reason = (f"{len(chosen)} greenest forecast window(s) before the deadline hold all {len(line_nos)} lines: "
              f"about {mean:.0f} gCO2e/kWh instead of {mean_once:.0f} when run at once")
    return Plan(not_before=not_before, summary={
        **base, "strategy": "greenest_windows", "reason": reason, "windows": [_window(s, n) for s, n in planned],
        "shifted_lines": shifted, "estimated_co2e_g": round(planned_g, 6), "run_at_once_co2e_g": round(at_once_g, 6),
        "saved_co2e_g": round(at_once_g - planned_g, 6)})


def _window(slot: Slot, lines: int) -> dict[str, Any]:
    return {"start": slot.start.isoformat(), "end": slot.end.isoformat(), "lines": lines,
            "g_per_kwh": slot.g_per_kwh}


class Scheduler:
    """Plans batches from the configured forecast (re-read for every batch: operators refresh the file)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def forecast(self) -> tuple[list[IntensityPoint], str] | None:
        path = self.hub.settings.energy.forecast_file
        if not path:
            return None
        file = Path(path) if Path(path).is_absolute() else self.hub.settings.data_dir / path
        try:
            return parse_forecast(file.read_text(encoding="utf-8")), str(file)
        except OSError as exc:
            raise ConfigError(f"cannot read the intensity forecast {file}: {exc}") from exc

    def plan(self, row: BatchRow, line_nos: list[int], now: datetime | None = None) -> Plan:
        now = now or utcnow()
        settings = self.hub.settings.batch
        expires = as_utc(row.expires_at)
        margin = max(timedelta(seconds=(expires - now).total_seconds() * 0.1), timedelta(seconds=0))
        deadline = expires - margin
        base = {"planned_at": now.isoformat(), "deadline": deadline.isoformat(), "lines": len(line_nos),
                "windows": []}
        if not settings.carbon_aware:
            return Plan(summary={**base, "strategy": "at_once", "source": None,
                                 "reason": "carbon-aware scheduling is off (batch.carbon_aware): lines run at once"})
        try:
            found = self.forecast()
        except ConfigError as exc:
            return Plan(summary={**base, "strategy": "at_once", "source": None,
                                 "reason": f"the forecast could not be read ({exc.message}): lines run at once"})
        if found is None:
            return Plan(summary={**base, "strategy": "at_once", "source": None,
                                 "reason": "no intensity forecast is configured (energy.forecast_file): "
                                           "lines run at once"})
        points, source = found
        rate = settings.concurrency * settings.max_capacity_share / settings.estimated_line_s
        return plan_lines(line_nos, points, now=now, deadline=deadline, line_seconds=settings.estimated_line_s,
                          lines_per_second_cap=rate, wh_per_line=settings.estimated_line_wh, source=source)
