"""Operations endpoints: /healthz (alive), /readyz (model loaded, database reachable), /metrics."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .deps import HubDep

router = APIRouter()

__all__ = ["router"]


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(hub: HubDep) -> JSONResponse:
    database = await anyio.to_thread.run_sync(hub.db.ping)
    backends = {b.name: b.ready() for b in hub.backends.backends} if hub.backends else {}
    ready = database and bool(backends) and all(backends.values())
    body = {"status": "ready" if ready else "not_ready", "database": database, "backends": backends}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, hub: HubDep) -> Response:
    registry = hub.services["metrics"].registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
