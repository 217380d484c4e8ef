"""An organization's monthly statement: grants received and every request paid, traced to its request id.

Read from the ledger (the book of record), so a statement shows what the journal has already
copied there (within ``credits.journal_interval_s`` of the request). Lines come in ledger order
and page with ``after`` (the last line's ``seq``), ``limit`` lines at a time.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from ..errors import InvalidRequest
from ..store.base import as_utc
from .amounts import as_number, format_credits
from .tables import CreditAccount, CreditGrant, CreditProgramme, CreditTransfer

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["month_bounds", "statement", "statement_charts", "statement_csv", "statement_html"]

COLUMNS = ("seq", "ts", "kind", "request_id", "model", "key", "batch", "grant", "programme", "prompt_tokens",
           "completion_tokens", "credits", "note")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"month must be YYYY-MM, got {month!r}", param="month") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


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
        note = "charged as reserved: its replica never reported" if details.get("expired") else (
            "beyond the reservation" if details.get("beyond_reservation") else "")
        lines.append({
            "seq": transfer.seq, "ts": as_utc(transfer.ts).isoformat(), "kind": "usage" if usage else "grant",
            "request_id": transfer.request_id, "model": transfer.model, "key": details.get("key"),
            "batch": details.get("batch"), "grant": grant_id,
            "programme": programmes.get(grant.programme_id) if grant else None,
            "prompt_tokens": details.get("prompt"), "completion_tokens": details.get("completion"),
            "credits": as_number(-transfer.amount if usage else transfer.amount), "note": note,
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


def statement_charts(data: dict[str, Any]) -> str:
    """Use per day, per model and per key, as accessible SVG with the numbers in tables."""
    from ..charts import Series, bar_chart

    usage = [line for line in data["lines"] if line["kind"] == "usage"]
    if not usage:
        return ""
    out = []
    groupings: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("Credits used per day", lambda x: str(x["ts"])[:10]),
        ("Credits used per model", lambda x: str(x["model"] or "?")),
        ("Credits used per API key", lambda x: f"key {x['key']}"),
    ]
    for title, key in groupings:
        totals: dict[str, int] = {}
        for line in usage:
            label = key(line)
            totals[label] = totals.get(label, 0) + round(-line["credits"] * 1_000_000)
        labels = sorted(totals)
        out.append(bar_chart(title, labels, [Series("credits", [totals[x] / 1_000_000 for x in labels])],
                             unit="credits").html())
    return "".join(out)


def statement_html(data: dict[str, Any], charts: str | None = None) -> str:
    """A printable statement with its charts (English; the web app's translated view is not built yet)."""
    e = html.escape
    charts = statement_charts(data) if charts is None else charts
    head = "".join(f"<th scope=\"col\">{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e('' if line[c] is None else str(line[c]))}</td>" for c in COLUMNS) + "</tr>"
        for line in data["lines"]
    )
    title = f"Credits statement {data['month']}: {data['organization'] or ''}"
    return (
        f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title></head><body>"
        f"<h1>{e(title)}</h1><p>Granted this month: {e(format_credits(round(data['granted'] * 1_000_000)))} credits; "
        f"used: {e(format_credits(int(round(data['used'] * 1_000_000))))} credits.</p>{charts}"
        f"<table><caption>Every grant received and every request paid, by request id</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>"
    )
