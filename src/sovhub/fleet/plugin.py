"""The fleet built-in plugin: its services, the invalidation subscriber, and publishing changes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..access.state import AccessState
from ..accounts import KeyCache
from ..backends.live import apply_catalog_soon
from ..hookspecs import hookimpl
from ..services import Provide
from .drain import Drain
from .invalidation import Invalidations, invalidates
from .leases import Leases
from .redis import FleetRedis

if TYPE_CHECKING:
    from ..events import Event
    from ..hub import Hub

log = logging.getLogger("sovhub.fleet")


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [
        Provide(FleetRedis, FleetRedis),
        Provide(Invalidations, _invalidations, needs=(FleetRedis, KeyCache, AccessState)),
        Provide(Leases, lambda h: Leases(h.services.get(FleetRedis)), needs=(FleetRedis,)),
        Provide(Drain, lambda h: Drain(h.settings.server.drain_seconds)),
    ]


@hookimpl
def sovhub_event(hub: Hub, event: Event) -> None:
    if not invalidates(event.name) or Invalidations not in hub.services:
        return
    # The code that made the change has already updated this process's caches (revoke_key forgets
    # the key, set_tier reloads the tiers...): the other replicas are told.
    hub.services.get(Invalidations).publish(event.name)


def _invalidations(hub: Hub) -> Invalidations:
    invalidations = Invalidations(hub, hub.services.get(FleetRedis))
    keys, access = hub.services.get(KeyCache), hub.services.get(AccessState)

    def drop(event: str) -> None:
        # Changes are rare (an operator's), so everything cached is dropped rather than picked over.
        keys.clear()
        access.load()
        if event.startswith("backend.") or event == "resubscribed":
            apply_catalog_soon(hub)  # the catalog another replica changed, served here without a restart

    invalidations.on_change(drop)
    return invalidations


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        redis = hub.services.get(FleetRedis)
        redis.open()
        try:
            async with hub.services.get(Invalidations).listening():
                yield
        finally:
            await redis.close()

    return lifespan()
