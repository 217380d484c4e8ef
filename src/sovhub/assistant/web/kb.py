"""The citation page: one knowledge base passage with its document, at /kb/chunks/{id}."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...errors import NotFound
from .auth import signed_in
from .render import Page, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/kb/chunks/{chunk_id}")
async def passage(chunk_id: int, request: Request) -> Response:
    from ..knowledge import KnowledgeBase

    page = signed_in(request)
    if not isinstance(page, Page):
        return page
    try:
        view = await anyio.to_thread.run_sync(page.hub.services.get(KnowledgeBase).get_chunk, chunk_id)
    except NotFound:
        return render(page, "error.html", status=404, error="not_found")
    return render(page, "passage.html", chunk=view)
