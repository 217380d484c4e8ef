"""GET /sustainability: the public sustainability page (part of the transparency report), in the UI's language.

``?days=N`` picks the period (the last N days, UTC, today included; 1 to 366, default 30); anything else is a
400 naming the parameter.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..assistant.web.render import page_for, render, request_hub
from ..errors import InvalidRequest
from .report import sustainability
from .svg import bar_chart

router = APIRouter(include_in_schema=False)

__all__ = ["MAX_DAYS", "router"]

DEFAULT_DAYS, MAX_DAYS = 30, 366


def period_days(raw: str | None) -> int:
    """The page's period from its query parameter: a whole number of days, 1 to MAX_DAYS."""
    if raw is None:
        return DEFAULT_DAYS
    text = raw.strip()
    days = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be a whole number of days from 1 to {MAX_DAYS} (got {raw[:20]!r})",
                             param="days", code="invalid_period")
    return days


@router.get("/sustainability", response_class=HTMLResponse)
async def sustainability_page(request: Request) -> HTMLResponse:
    hub = request_hub(request)
    days = period_days(request.query_params.get("days"))
    data = await anyio.to_thread.run_sync(sustainability, hub, days)
    return render(page_for(request), "sustainability.html", data=data, bar_chart=bar_chart)
