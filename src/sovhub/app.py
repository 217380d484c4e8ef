"""The app factory: `create_app(hub)` builds the ASGI app around an existing Hub."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, FastAPI

from . import __version__
from .api import ops
from .api.errors import install_error_handlers
from .api.metrics_listener import MetricsListener
from .api.middleware import HubMiddleware
from .backends.catalog import backend_configs
from .backends.registry import BackendRegistry
from .egress import Egress
from .hub import Hub
from .metering import Meter
from .observability import Metrics

__all__ = ["create_app", "create_worker_app", "hub_lifespan"]

log = logging.getLogger("sovhub")

#: gc thresholds once start-up is over and its objects are frozen (see the lifespan below).
GC_THRESHOLDS = (10_000, 20, 100)


@contextlib.asynccontextmanager
async def hub_lifespan(hub: Hub, *, progress: Callable[[str], None] | None = None,
                       app: FastAPI | None = None) -> AsyncIterator[None]:
    """Start what the hub runs (backends, metering, every plugin's loops), stop it in reverse order.

    The gateway's app and the batch worker's (:func:`create_worker_app`) both run this.
    """
    metrics = hub.services.get(Metrics)
    # Everything started here is closed in reverse order, also when a later step fails.
    async with contextlib.AsyncExitStack() as stack:
        configs = backend_configs(hub)
        egress = hub.services.get(Egress)
        egress.open([c.url for c in configs if c.url])
        stack.push_async_callback(egress.close)
        registry = hub.services.get(BackendRegistry)
        registry.load(configs)
        if hub.settings.metrics_port is not None:
            listener = MetricsListener(hub.settings.metrics_host, hub.settings.metrics_port, metrics.registry,
                                       lambda: hub.settings.resolved_metrics_token)
            listener.start()
            stack.callback(listener.close)
            if app is not None:
                app.state.metrics_listener = listener
            log.info("metrics served at http://%s:%d/metrics", hub.settings.metrics_host, listener.port)
        meter = hub.services.get(Meter)
        await meter.start()
        stack.push_async_callback(meter.close)
        for cm in hub.pm.hook.sovhub_lifespan(hub=hub):
            if cm is not None:
                await stack.enter_async_context(cm)
        stack.push_async_callback(registry.close)
        await registry.start(progress)
        if hub.settings.embeddings_enabled:
            if progress:
                progress(f"loading embedding model {hub.settings.embeddings_model_id}")
            hub.embedder.load()
        # Everything loaded so far (models, exemplar banks, detectors) lives as long as the
        # process: move it out of the collector's reach, or every full collection walks those
        # millions of objects again (it cost a fifth of the gateway's CPU and its p99 spikes).
        gc.collect()
        gc.freeze()
        # What is left is requests' short-lived objects: collect the young generation less often
        # and the old one rarely. With the defaults (700, 10, 10) a full collection ran about every
        # 200 ms at 500 RPS and held the event loop for ~3 ms each time (p99 spikes in a time series
        # of the gateway benchmark's latencies).
        gc.set_threshold(*GC_THRESHOLDS)
        if progress:
            progress("ready")
        yield
    log.info("shutdown complete", extra={"usage_written": meter.written})


def create_app(hub: Hub, *, progress: Callable[[str], None] | None = None) -> FastAPI:
    """Build the app. Models load in the lifespan (start-up), not here."""
    metrics = hub.services.get(Metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub_lifespan(hub, progress=progress, app=app):
            yield

    app = FastAPI(
        title="sovhub",
        version=__version__,
        description="A sovereign AI hub: OpenAI-compatible API, localized assistant, data rights.",
        lifespan=lifespan,
        openapi_url="/hub/v1/openapi.json",
        docs_url="/hub/v1/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.hub = hub
    install_error_handlers(app)
    routers = [router for group in hub.pm.hook.sovhub_routers(hub=hub) for router in group or []]
    # Routes are tried in order, and each miss costs a regex match per route of the router: the
    # OpenAI-compatible /v1 routes carry the traffic (chat completions most), so they are tried
    # first; the order is otherwise kept.
    def rank(router: APIRouter) -> int:
        paths = [getattr(route, "path", "") for route in router.routes]
        return 0 if "/v1/chat/completions" in paths else 1 if any(p.startswith("/v1/") for p in paths) else 2

    routers.sort(key=rank)
    for router in routers:
        app.include_router(router)
    hub.pm.hook.sovhub_setup_app(app=app, hub=hub)
    public_url = hub.settings.access.public_url or ""
    app.add_middleware(
        HubMiddleware,
        metrics=metrics,
        max_body=hub.settings.max_body_bytes,
        body_limits={path: size for group in hub.pm.hook.sovhub_body_limits(hub=hub) for path, size in
                     (group or {}).items()},
        hsts=public_url.lower().startswith("https://"),
    )
    return app


def create_worker_app(hub: Hub, *, progress: Callable[[str], None] | None = None) -> FastAPI:
    """The batch worker's app: the hub's lifespan (batch runner, leased purges, metering) and only the
    operations routes (/healthz, /readyz, and /metrics unless ``metrics_port`` serves it): no API at all."""
    metrics = hub.services.get(Metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub_lifespan(hub, progress=progress, app=app):
            yield

    app = FastAPI(title="sovhub batch worker", version=__version__, lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None)
    app.state.hub = hub
    install_error_handlers(app)
    app.include_router(ops.router)
    if hub.settings.metrics_port is None:
        app.include_router(ops.metrics_router)
    app.add_middleware(HubMiddleware, metrics=metrics, max_body=hub.settings.max_body_bytes, body_limits={}, hsts=False)
    return app
