"""/v1/files (thin: authenticate, hand to the store, shape OpenAI's objects)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..api.deps import HubDep, InferencePrincipal
from ..errors import PermissionDenied
from ..pipeline import Principal
from .store import FileStore, file_object
from .upload import receive_upload

router = APIRouter(tags=["files"])

__all__ = ["org_of", "router"]


def org_of(principal: Principal) -> int:
    if principal.org_id is None:
        raise PermissionDenied("files belong to an organization: call with an API key of one")
    return principal.org_id


def _length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


@router.post("/v1/files")
async def create_file(request: Request, hub: HubDep, principal: InferencePrincipal) -> JSONResponse:
    org_id = org_of(principal)
    store = hub.services.get(FileStore)
    row = await receive_upload(store, request.headers.get("content-type", ""), _length(request), request.stream(),
                               org_id=org_id, key_id=principal.key_id, user_id=principal.user_id)
    hub.emit("file.created", actor=principal.label, subject=f"file:{row.id}", org_id=org_id,
             purpose=row.purpose, bytes=row.bytes)
    return JSONResponse(file_object(row))


@router.get("/v1/files")
async def list_files(
    hub: HubDep, principal: InferencePrincipal,
    purpose: str | None = Query(None, description="Only files with this purpose."),
    limit: int = Query(10_000, description="1 to 10,000 files per page."),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, description="The id of the last file of the previous page."),
) -> dict[str, Any]:
    org_id = org_of(principal)
    store = hub.services.get(FileStore)
    rows, more = await anyio.to_thread.run_sync(
        lambda: store.page(org_id, purpose=purpose, limit=limit, order=order, after=after))
    data = [file_object(r) for r in rows]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    org_id = org_of(principal)
    row = await anyio.to_thread.run_sync(hub.services.get(FileStore).get, org_id, file_id)
    return file_object(row)


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    org_id = org_of(principal)
    await anyio.to_thread.run_sync(hub.services.get(FileStore).delete, org_id, file_id)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/v1/files/{file_id}/content", response_model=None)
async def file_content(file_id: str, hub: HubDep, principal: InferencePrincipal) -> StreamingResponse:
    org_id = org_of(principal)
    store = hub.services.get(FileStore)
    row = await anyio.to_thread.run_sync(store.get, org_id, file_id)
    chunks: Iterator[bytes] = store.iter_content(org_id, file_id)
    # The first chunk is opened before the response starts: a file that fails authentication (altered,
    # or its key erased) gets an error status, not a truncated 200.
    first = await anyio.to_thread.run_sync(next, chunks, None)

    async def body() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        while True:
            piece = await anyio.to_thread.run_sync(next, chunks, None)
            if piece is None:
                return
            yield piece

    media = "application/jsonl" if row.filename.endswith(".jsonl") else "application/octet-stream"
    return StreamingResponse(body(), media_type=media, headers={
        "content-length": str(row.bytes),
        "content-disposition": f"attachment; filename*=UTF-8''{_quote(row.filename)}",
    })


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
