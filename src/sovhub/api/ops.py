"""Operations endpoints: /healthz (alive), /readyz (model loaded, database reachable, not draining), /metrics.

`/metrics` tells anyone who reads it the hub's traffic, models and error rates: it wants
``Authorization: Bearer <metrics_token>`` (401 otherwise), the token Prometheus reads from a file
(``authorization: {credentials_file: ...}`` in its scrape config). With ``metrics_port`` set it is
served only on that port (:mod:`.metrics_listener`), and this app has no ``/metrics`` route.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..backends.registry import BackendRegistry
from ..errors import AuthenticationFailed
from ..fleet.drain import Drain
from ..observability import Metrics
from .deps import HubDep
from .metrics_listener import metrics_token_ok

router = APIRouter()
#: Included by the API plugin unless ``metrics_port`` moves /metrics to its own listener.
metrics_router = APIRouter()

__all__ = ["metrics_router", "router"]


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(hub: HubDep) -> JSONResponse:
    if Drain in hub.services and hub.services.get(Drain).draining:
        # Shutting down: the load balancer must stop sending here, at once (no database read first).
        return JSONResponse({"status": "draining"}, status_code=503, headers={"retry-after": "1"})
    database = await anyio.to_thread.run_sync(hub.db.ping)
    registry = hub.services.get(BackendRegistry)
    backends = {b.name: b.ready() for b in registry.backends} if registry.running else {}
    ready = database and bool(backends) and all(backends.values())
    body = {"status": "ready" if ready else "not_ready", "database": database, "backends": backends}
    return JSONResponse(body, status_code=200 if ready else 503)


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, hub: HubDep) -> Response:
    if not metrics_token_ok(request.headers.get("authorization", ""), hub.settings.resolved_metrics_token):
        raise AuthenticationFailed("/metrics needs the metrics token: Authorization: Bearer <metrics_token> "
                                   "(<data_dir>/metrics_token or the metrics_token setting)",
                                   code="invalid_metrics_token", headers={"www-authenticate": 'Bearer realm="metrics"'})
    registry = hub.services.get(Metrics).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
