"""The public sustainability figures: energy and emissions per day and per model, renewable share, work moved
to greener hours, SCI. Totals over every organization: counts only, nothing about a person or a customer."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Date, cast, func, select

from ..access.usage import energy_fields
from ..store.base import utcnow
from ..store.tables import UsageRecord

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["sustainability"]


def _day(hub: Hub) -> ColumnElement[Any]:
    if hub.db.is_sqlite:
        return func.date(UsageRecord.ts)
    return cast(func.timezone("UTC", UsageRecord.ts), Date)


def sustainability(hub: Hub, days: int = 30) -> dict[str, Any]:
    since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    embodied = hub.settings.energy.embodied_g_per_hour
    sums = (func.count(), func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
            func.sum(UsageRecord.energy_wh), func.sum(UsageRecord.co2e_g),
            func.sum(UsageRecord.renewable_share * UsageRecord.energy_wh),
            func.coalesce(func.sum(UsageRecord.latency_ms), 0))
    day = _day(hub)
    with hub.db.session() as s:
        by_day = s.execute(select(day, *sums).where(UsageRecord.ts >= since).group_by(day).order_by(day)).all()
        by_model = s.execute(select(UsageRecord.model, *sums).where(UsageRecord.ts >= since)
                             .group_by(UsageRecord.model).order_by(UsageRecord.model)).all()
        total = s.execute(select(*sums).where(UsageRecord.ts >= since)).one()

    def row(n: Any, tokens: Any, wh: Any, co2: Any, ren: Any, ms: Any) -> dict[str, Any]:
        return {"requests": int(n), "tokens": int(tokens),
                **energy_fields(wh, co2, ren, int(tokens), embodied * float(ms) / 3.6e6)}

    return {
        "days": days, "since": since.date().isoformat(),
        "per_day": [{"date": str(d), **row(*rest)} for d, *rest in by_day],
        "per_model": [{"model": m, **row(*rest)} for m, *rest in by_model],
        "total": row(*total),
        "shifted": _shifted(hub, since),
        "pue": hub.settings.energy.pue,
        "contracted_renewable_share": hub.settings.energy.contracted_renewable_share,
        "intensity_source": hub.settings.energy.intensity,
    }


def _shifted(hub: Hub, since: Any) -> dict[str, Any]:
    """Batch lines planned into greener hours, and the emissions the plans expected to save."""
    from ..batches.tables import BatchRow

    with hub.db.session() as s:
        plans = list(s.scalars(select(BatchRow.schedule).where(BatchRow.created_at >= since,
                                                               BatchRow.schedule.is_not(None))))
    lines = sum(int(p.get("shifted_lines") or 0) for p in plans if isinstance(p, dict))
    saved = sum(float(p.get("saved_co2e_g") or 0.0) for p in plans if isinstance(p, dict))
    planned = sum(1 for p in plans if isinstance(p, dict) and p.get("strategy") == "greenest_windows")
    return {"batches_planned": planned, "lines_shifted": lines, "saved_co2e_g_estimate": round(saved, 6)}
