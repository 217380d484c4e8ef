"""The Batch API as a built-in plugin: store, scheduler and runner as typed services; the runner's loop in the
lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..api.chat.service import ChatService
from ..backends.registry import BackendRegistry
from ..files.store import FileStore
from ..fleet.drain import Drain
from ..hookspecs import hookimpl
from ..services import Provide
from .runner import BatchRunner
from .schedule import Scheduler
from .store import BatchStore

if TYPE_CHECKING:
    from ..hub import Hub


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [
        Provide(BatchStore, lambda h: BatchStore(h, h.services.get(FileStore)), needs=(FileStore,)),
        Provide(Scheduler, Scheduler),
        Provide(BatchRunner, lambda h: BatchRunner(h, h.services.get(BatchStore), h.services.get(Scheduler)),
                needs=(BatchStore, Scheduler, ChatService, BackendRegistry, Drain)),
    ]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .router import router

    return [router]


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    return {"batches": hub.services.get(BatchStore).export_org(org_id)}


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    hub.services.get(BatchStore).erase_org(org_id)


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    runner = hub.services.get(BatchRunner)
    await runner.start()
    try:
        yield
    finally:
        await runner.close()
