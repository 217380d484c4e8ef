"""An organization's monthly statement: grants received and every request paid, traced to its request id.

Read from the ledger (the book of record), so a statement shows what the journal has already
copied there (within ``credits.journal_interval_s`` of the request). Lines come in ledger order
and page with ``after`` (the last line's ``seq``), ``limit`` lines at a time. JSON and CSV are
here; the HTML statement, in the reader's language, is :mod:`.statement_page`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from ..errors import InvalidRequest
from ..store.base import as_utc
from .amounts import MICRO, as_number
from .tables import CreditAccount, CreditGrant, CreditProgramme, CreditTransfer

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["COLUMNS", "NOTES", "days_of", "month_bounds", "statement", "statement_csv", "statement_groups"]

# The CSV and JSON are machine formats and keep these English notes; the HTML statement says them
# in the reader's language by `note_code`.
NOTES = {"expired": "charged as reserved: its replica never reported", "beyond_reservation": "beyond the reservation"}
COLUMNS = ("seq", "ts", "kind", "request_id", "model", "key", "batch", "grant", "programme", "prompt_tokens",
           "completion_tokens", "credits", "note")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"month must be YYYY-MM, got {month!r}", param="month") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def days_of(month: str, totals: dict[str, int], today: datetime | None = None) -> list[tuple[str, int]]:
    """Every day of `month` (up to today, for the current month) with its total from `totals` (0 if none)."""
    start, end = month_bounds(month)
    last = min(end, ((today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
                     + timedelta(days=1)))
    days, day = [], start
    while day < last:
        key = day.date().isoformat()
        days.append((key, int(totals.get(key, 0))))
        day += timedelta(days=1)
    # Use on a day past `today` (clocks apart) still shows.
    return days + sorted((k, v) for k, v in totals.items() if k >= last.date().isoformat())


def statement(hub: Hub, org_id: int, org_name: str | None, month: str, *, after: int = 0,
              limit: int = 10_000) -> dict[str, Any]:
    start, end = month_bounds(month)
    t = CreditTransfer
    grant_of_debit = CreditAccount.__table__.alias("d")
    grant_of_credit = CreditAccount.__table__.alias("c")
    with hub.db.session() as s:
        rows = s.execute(
            select(t, grant_of_debit.c.ref_id, grant_of_credit.c.ref_id)
            .join(grant_of_debit, grant_of_debit.c.id == t.debit_account_id)
            .join(grant_of_credit, grant_of_credit.c.id == t.credit_account_id)
            .where(t.org_id == org_id, t.ts >= start, t.ts < end, t.seq > after,
                   or_(and_(t.code == "usage", t.kind.in_(("post", "posted"))), t.code == "grant"))
            .order_by(t.seq).limit(limit + 1)
        ).all()
        grants = {g.id: g for g in s.scalars(select(CreditGrant).where(CreditGrant.org_id == org_id))}
        programmes = dict(s.execute(select(CreditProgramme.id, CreditProgramme.name)).all())
    more = len(rows) > limit
    lines = []
    used = granted = 0
    for transfer, debit_ref, credit_ref in rows[:limit]:
        usage = transfer.code == "usage"
        grant_id = debit_ref if usage else credit_ref
        grant = grants.get(grant_id)
        details = transfer.details or {}
        if usage:
            used += transfer.amount
        else:
            granted += transfer.amount
        note_code = "expired" if details.get("expired") else (
            "beyond_reservation" if details.get("beyond_reservation") else None)
        lines.append({
            "seq": transfer.seq, "ts": as_utc(transfer.ts).isoformat(), "kind": "usage" if usage else "grant",
            "request_id": transfer.request_id, "model": transfer.model, "key": details.get("key"),
            "batch": details.get("batch"), "grant": grant_id,
            "programme": programmes.get(grant.programme_id) if grant else None,
            "prompt_tokens": details.get("prompt"), "completion_tokens": details.get("completion"),
            "credits": as_number(-transfer.amount if usage else transfer.amount),
            "note": NOTES[note_code] if note_code else "", "note_code": note_code,
        })
    return {"object": "organization.statement", "organization": org_name, "month": month,
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "granted": as_number(granted), "used": as_number(used), "lines": lines, "has_more": more,
            "next_after": lines[-1]["seq"] if more and lines else None}


def statement_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for line in data["lines"]:
        writer.writerow(["" if line[c] is None else line[c] for c in COLUMNS])
    return out.getvalue()


def statement_groups(data: dict[str, Any]) -> dict[str, list[tuple[Any, int]]]:
    """The statement's use per day, per model and per API key: (label, micro-credits) rows in label order.

    Summed from the lines themselves, so the charts and their tables always add up to the
    statement (the key is its id; None for use without one); every day of the month is there,
    0 where nothing was used."""
    groupings: dict[str, Callable[[dict[str, Any]], Any]] = {
        "day": lambda x: str(x["ts"])[:10], "model": lambda x: x["model"] or "?", "key": lambda x: x["key"]}
    if not any(line["kind"] == "usage" for line in data["lines"]):
        return {name: [] for name in groupings}
    out: dict[str, list[tuple[Any, int]]] = {}
    for name, label_of in groupings.items():
        totals: dict[Any, int] = {}
        for line in data["lines"]:
            if line["kind"] == "usage":
                label = label_of(line)
                totals[label] = totals.get(label, 0) + round(-line["credits"] * MICRO)
        out[name] = sorted(totals.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    out["day"] = days_of(data["month"], dict(out["day"]))
    return out
