"""GET /sustainability: the public sustainability page (part of the transparency report), in the UI's language."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..assistant.web.render import page_for, render, request_hub
from .report import sustainability
from .svg import bar_chart

router = APIRouter(include_in_schema=False)

__all__ = ["router"]


@router.get("/sustainability", response_class=HTMLResponse)
async def sustainability_page(request: Request) -> HTMLResponse:
    hub = request_hub(request)
    data = await anyio.to_thread.run_sync(sustainability, hub, 30)
    return render(page_for(request), "sustainability.html", data=data, bar_chart=bar_chart)
