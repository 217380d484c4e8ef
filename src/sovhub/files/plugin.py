"""The Files API as a built-in plugin: its store as a typed service, its routes, its purge loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..services import Provide
from .store import FileStore

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("sovhub.files")


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [Provide(FileStore, FileStore)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .router import router

    return [router]


@hookimpl
def sovhub_body_limits(hub: Hub) -> dict[str, int]:
    from .upload import MULTIPART_OVERHEAD

    return {"/v1/files": hub.settings.files.max_bytes + MULTIPART_OVERHEAD}


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    return {"files": hub.services.get(FileStore).export_org(org_id)}


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    hub.services.get(FileStore).erase_org(org_id)


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    return {"uploaded_files": hub.services.get(FileStore).export_user(user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    hub.services.get(FileStore).unlink_user(user_id)


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    task = asyncio.create_task(_purge_periodically(hub), name="sovhub-files-purge")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _purge_periodically(hub: Hub) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    store = hub.services.get(FileStore)
    while True:
        try:
            deleted = await asyncio.to_thread(store.purge)
            if deleted:
                log.info("deleted %d expired or unfinished files", deleted)
        except SQLAlchemyError as exc:
            log.error("file purge failed, will retry: %s", exc)
        await asyncio.sleep(hub.settings.files.purge_interval_s)
