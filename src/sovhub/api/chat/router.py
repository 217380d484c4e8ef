"""POST /v1/chat/completions (thin: parse, authenticate, hand to the service, shape the response)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..deps import HubDep, InferencePrincipal, add_backend_time
from .protocol import ChatCompletionRequest
from .service import ChatService

router = APIRouter()

__all__ = ["ReleasingStream", "router", "watch_disconnect"]

@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, hub: HubDep, principal: InferencePrincipal
) -> JSONResponse | StreamingResponse:
    service = hub.services.get(ChatService)
    prepared = await service.prepare(body, principal, request.scope["state"]["request_id"])
    add_backend_time(request, prepared.backend_s)

    def on_backend(seconds: float) -> None:
        add_backend_time(request, seconds)

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return ReleasingStream(
            service.sse(prepared, include_usage, on_backend),
            lambda: service.release(prepared),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", **prepared.headers},
        )

    # Non-streaming: generation keeps going only while the client is there.
    watcher = asyncio.create_task(watch_disconnect(request, prepared.cancel.cancel))
    try:
        result = await service.complete(prepared, on_backend)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await service.release(prepared)  # a no-op when `complete` got to the end
    return JSONResponse(result, headers=prepared.headers)


class ReleasingStream(StreamingResponse):
    """A streamed answer that is recorded even if its body is never read (client gone first)."""

    def __init__(self, content: Any, release: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self._release()


async def watch_disconnect(request: Request, cancel: Any) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel()
            return
