"""The Responses API as a built-in plugin: its services, routes, share of export and erasure, purge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from ...files.store import FileStore
from ...hookspecs import hookimpl
from ...hub import Hub
from ...services import Provide
from ..chat.service import ChatService
from .service import ResponsesService
from .store import ResponseStore

log = logging.getLogger("sovhub.api.responses")


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [
        Provide(ResponseStore, ResponseStore),
        Provide(ResponsesService, lambda h: ResponsesService(h, h.services.get(ResponseStore)),
                needs=(ResponseStore, ChatService, FileStore)),
    ]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .router import router

    return [router]


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    return {"api_responses": hub.services.get(ResponseStore).export_user(user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    hub.services.get(ResponseStore).erase_user(user_id)


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    return {"api_responses": hub.services.get(ResponseStore).export_org(org_id)}


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    hub.services.get(ResponseStore).erase_org(org_id)


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    """The purge of expired responses (one replica at a time), and this replica's background runs
    (ended when the app stops; those a killed hub left are failed when a lone replica starts)."""
    from ...fleet.leases import Leases, leased_loops, purge_round
    from ...fleet.redis import FleetRedis

    store = hub.services.get(ResponseStore)
    if not hub.services.get(FleetRedis).enabled:
        # The only replica, starting: a background response still queued or running was left by a
        # hub that was killed. (With several replicas another one may be running it: left alone.)
        orphans = await asyncio.to_thread(store.fail_orphans)
        if orphans:
            log.warning("%d background response(s) left running by a stopped hub marked failed", orphans)
    purge = purge_round(store.purge_expired, "stored responses",
                        lambda n: hub.emit("retention.purged", subject="responses", deleted=n))
    background = hub.services.get(ResponsesService).background
    stale = purge_round(background.sweep, "background responses left by a stopped replica (failed)")
    async with leased_loops(hub.services.get(Leases),
                            ("responses-purge", hub.settings.sovereignty.purge_interval_s, purge),
                            ("responses-stale", background.stale_s / 2, stale)):
        async with background.lifespan():
            yield
