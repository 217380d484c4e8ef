"""/v1/batches (OpenAI's Batch API) and /hub/v1/batches/{id}/schedule (the carbon-aware plan)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query

from ..api.deps import HubDep, InferencePrincipal
from ..files.router import org_of
from .protocol import CreateBatchRequest
from .runner import BatchRunner
from .store import BatchStore, batch_object

router = APIRouter(tags=["batches"])

__all__ = ["router"]


@router.post("/v1/batches")
async def create_batch(body: CreateBatchRequest, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    org_of(principal)
    store = hub.services.get(BatchStore)
    row = await anyio.to_thread.run_sync(lambda: store.create(
        principal, input_file_id=body.input_file_id, endpoint=body.endpoint,
        completion_window=body.completion_window, metadata=body.metadata,
        output_expires_after_s=body.output_expires_after.seconds if body.output_expires_after else None))
    hub.emit("batch.created", actor=principal.label, subject=f"batch:{row.id}", org_id=row.org_id,
             endpoint=row.endpoint)
    hub.services.get(BatchRunner).wake()
    return batch_object(row)


@router.get("/v1/batches")
async def list_batches(
    hub: HubDep, principal: InferencePrincipal,
    after: str | None = Query(None, description="The id of the last batch of the previous page."),
    limit: int = Query(20, description="1 to 100 batches per page."),
) -> dict[str, Any]:
    org_id = org_of(principal)
    store = hub.services.get(BatchStore)

    def read() -> tuple[list[dict[str, Any]], bool]:
        rows, more = store.page(org_id, limit=limit, after=after)
        counts = store.counts(r.seq for r in rows)
        return [batch_object(r, counts.get(r.seq)) for r in rows], more

    data, more = await anyio.to_thread.run_sync(read)
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@router.get("/v1/batches/{batch_id}")
async def retrieve_batch(batch_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    org_id = org_of(principal)
    store = hub.services.get(BatchStore)

    def read() -> dict[str, Any]:
        row = store.get(org_id, batch_id)
        return batch_object(row, store.counts([row.seq])[row.seq])

    return await anyio.to_thread.run_sync(read)


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    org_id = org_of(principal)
    store = hub.services.get(BatchStore)
    row = await anyio.to_thread.run_sync(store.cancel, org_id, batch_id)
    hub.emit("batch.cancelling", actor=principal.label, subject=f"batch:{row.id}", org_id=org_id)
    hub.services.get(BatchRunner).wake()
    return batch_object(row, (await anyio.to_thread.run_sync(store.counts, [row.seq]))[row.seq])


@router.get("/hub/v1/batches/{batch_id}/schedule", tags=["hub"])
async def batch_schedule(batch_id: str, hub: HubDep, principal: InferencePrincipal) -> dict[str, Any]:
    """The carbon-aware plan: its windows, why, and the emissions it saves against running at once."""
    org_id = org_of(principal)
    row = await anyio.to_thread.run_sync(hub.services.get(BatchStore).get, org_id, batch_id)
    plan = dict(row.schedule or {"strategy": "pending", "reason": "the batch is still being validated",
                                 "windows": []})
    return {"object": "batch.schedule", "batch_id": row.id, "status": row.status, **plan}
