"""The Responses API as a built-in plugin: its services, routes, share of export and erasure, purge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

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
                needs=(ResponseStore, ChatService)),
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
def sovhub_lifespan(hub: Hub) -> Any:
    return _purging(hub)


@contextlib.asynccontextmanager
async def _purging(hub: Hub) -> AsyncIterator[None]:
    task = asyncio.create_task(_purge_periodically(hub), name="sovhub-responses-purge")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _purge_periodically(hub: Hub) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    store = hub.services.get(ResponseStore)
    while True:
        try:
            deleted = await asyncio.to_thread(store.purge_expired)
            if deleted:
                log.info("retention purge deleted %d stored responses", deleted)
                hub.emit("retention.purged", subject="responses", deleted=deleted)
        except SQLAlchemyError as exc:
            log.error("retention purge of responses failed, will retry: %s", exc)
        await asyncio.sleep(hub.settings.sovereignty.purge_interval_s)
