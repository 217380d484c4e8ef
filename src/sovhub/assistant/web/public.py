"""Pages anyone may read without signing in: the transparency report and the site's icon.

The transparency report (``/transparency``) is shown in the visitor's language.

The figures are :func:`sovhub.sovereignty.transparency.report`, the same as the JSON at
``/hub/v1/transparency``; this page only gives them translated labels and the site's layout.
A section or figure a plugin adds without a label here is shown under its own name.
"""

from __future__ import annotations

from datetime import datetime

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from ...sovereignty.transparency import report
from .render import STATIC_DIR, page_for, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/transparency")
async def transparency_page(request: Request) -> Response:
    page = page_for(request)
    data = await anyio.to_thread.run_sync(report, page.hub)
    generated = datetime.fromisoformat(data["generated_at"])
    return render(page, "transparency.html", sections=sorted(data["sections"].items()),
                  unavailable=data["unavailable"], generated=generated)


@router.get("/favicon.ico")
async def favicon() -> Response:
    # Browsers ask for /favicon.ico whatever the page says; an SVG answers them all.
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400"})
