"""An organization's usage by day (UTC), model and key, from the metered usage records."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Date, cast, func, select

from ..errors import InvalidRequest
from ..store.base import utcnow
from ..store.tables import ApiKey, UsageRecord

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["CSV_COLUMNS", "energy_fields", "usage_csv", "usage_summary"]

CSV_COLUMNS = ("date", "model", "key_prefix", "key_name", "requests", "prompt_tokens", "completion_tokens",
               "total_tokens", "energy_wh", "co2e_g", "renewable_share", "sci_g_per_1k_tokens")
MAX_DAYS = 366


def usage_summary(hub: Hub, org_id: int, days: int = 30) -> list[dict[str, Any]]:
    """Rows {date, model, key_prefix, key_name, requests, *_tokens} for the last `days` days, newest first.

    One grouped query, so the cost does not grow with the number of keys or models.
    """
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be between 1 and {MAX_DAYS}", param="days")
    since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day: ColumnElement[Any]
    if hub.db.is_sqlite:
        day = func.date(UsageRecord.ts)
    else:
        day = cast(func.timezone("UTC", UsageRecord.ts), Date)
    stmt = (
        select(
            day.label("day"), UsageRecord.model, ApiKey.prefix, ApiKey.name,
            func.count().label("requests"),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
            func.sum(UsageRecord.energy_wh), func.sum(UsageRecord.co2e_g),
            func.sum(UsageRecord.renewable_share * UsageRecord.energy_wh),
            func.coalesce(func.sum(UsageRecord.latency_ms), 0),
        )
        .select_from(UsageRecord)
        .outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id)
        .where(UsageRecord.org_id == org_id, UsageRecord.ts >= since)
        .group_by(day, UsageRecord.model, ApiKey.prefix, ApiKey.name)
        .order_by(day.desc(), UsageRecord.model, ApiKey.prefix)
    )
    with hub.db.session() as s:
        rows = s.execute(stmt).all()
    embodied = hub.settings.energy.embodied_g_per_hour
    return [
        {
            "date": str(d), "model": model, "key_prefix": prefix, "key_name": name, "requests": int(n),
            "prompt_tokens": int(p), "completion_tokens": int(c), "total_tokens": int(p) + int(c),
            **energy_fields(wh, co2, renewable_wh, int(p) + int(c), embodied * float(ms) / 3.6e6),
        }
        for d, model, prefix, name, n, p, c, wh, co2, renewable_wh, ms in rows
    ]


def energy_fields(wh: float | None, co2: float | None, renewable_wh: float | None, tokens: int,
                  embodied_g: float = 0.0) -> dict[str, float | None]:
    """Energy, emissions, renewable share (energy-weighted) and SCI per 1,000 tokens: ((E x I) + M) / R."""
    return {
        "energy_wh": _sig(wh),
        "co2e_g": _sig(co2),
        "renewable_share": round(float(renewable_wh) / float(wh), 4) if renewable_wh is not None and wh else None,
        "sci_g_per_1k_tokens": _sig((float(co2) + embodied_g) * 1000 / tokens) if co2 is not None and tokens else None,
    }


def _sig(value: float | None) -> float | None:
    """Six significant digits: a request's energy is often far below a milliwatt-hour."""
    return float(f"{float(value):.6g}") if value is not None else None


def usage_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # A model or key name starting with = + - @ would run as a formula in a spreadsheet.
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
