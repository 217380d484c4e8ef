"""/v1/responses: create (streamed, not, or in the background), retrieve, delete, cancel, input items,
input token counts (thin: the service does the work). Every route needs a key with the scope
``inference``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ...errors import InvalidRequest, SovhubError
from ..chat.router import ReleasingStream, watch_disconnect
from ..deps import HubDep, InferencePrincipal, add_backend_time
from .protocol import CreateResponse, TokenCountsBody
from .service import ResponseRun, ResponsesService

router = APIRouter()

__all__ = ["router"]


def _service(hub: Any) -> ResponsesService:
    return hub.services.get(ResponsesService)  # type: ignore[no-any-return]


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: CreateResponse, request: Request, hub: HubDep, principal: InferencePrincipal
) -> JSONResponse | ReleasingStream | StreamingResponse:
    service = _service(hub)
    request_id = request.scope["state"]["request_id"]
    if body.background:
        queued = await service.create_background(body, principal, request_id)
        if not body.stream:
            return JSONResponse(queued)
        # Streamed as it runs; the client leaving stops the stream, not the run.
        return _background_sse(await service.background.stream(principal, queued["id"], None))
    run = await service.start(body, principal, request_id)
    add_backend_time(request, run.chat.backend_s)

    def on_backend(seconds: float) -> None:
        add_backend_time(request, seconds)

    if body.stream:
        return ReleasingStream(
            _sse(service, run, on_backend), lambda: service.finish(run),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no", **run.chat.headers},
        )
    watcher = asyncio.create_task(watch_disconnect(request, run.chat.cancel.cancel))
    try:
        result = await service.complete(run, on_backend)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await service.finish(run)
    return JSONResponse(result, headers=run.chat.headers)


async def _sse(service: ResponsesService, run: ResponseRun, on_backend: Any) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(service.events(run, on_backend)) as events:
            async for event in events:
                data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                yield f"event: {event['type']}\ndata: {data}\n\n".encode()
    except SovhubError as exc:  # pragma: no cover - events() reports its failures in-band itself
        yield b"event: error\ndata: " + json.dumps(exc.to_dict()).encode() + b"\n\n"


_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _background_sse(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for event in events:
            data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
            yield f"event: {event['type']}\ndata: {data}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.post("/v1/responses/input_tokens")
async def count_input_tokens(
    body: TokenCountsBody, request: Request, hub: HubDep, principal: InferencePrincipal
) -> dict[str, Any]:
    return await _service(hub).input_tokens(body, principal, request.scope["state"]["request_id"])


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(
    response_id: str, hub: HubDep, principal: InferencePrincipal, stream: bool = False,
    starting_after: int | None = Query(None, ge=0, le=2**63 - 1),
) -> dict[str, Any] | StreamingResponse:
    service = _service(hub)
    if not stream:
        if starting_after is not None:
            raise InvalidRequest("starting_after resumes a stream: it needs stream=true", param="starting_after")
        return await service.retrieve(principal, response_id)
    return _background_sse(await service.background.stream(principal, response_id, starting_after))


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    return await _service(hub).delete(principal, response_id)


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    return await _service(hub).cancel(principal, response_id)


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str, hub: HubDep, principal: InferencePrincipal,
    limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc", after: str | None = None,
) -> dict[str, Any]:
    return await _service(hub).input_items(principal, response_id, limit=limit, order=order, after=after)
