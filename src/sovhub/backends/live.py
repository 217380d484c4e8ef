"""The backend catalog applied to the running hub, without a restart.

The operator console calls :func:`apply_catalog` after each change it makes; another replica's
change (``backend.*`` events over the fleet's invalidations) calls :func:`apply_catalog_soon`
from the listener's worker thread. Both read the catalog from the database, so every replica
ends up serving what the table says, whichever process changed it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING

import anyio

from ..egress import Egress
from .catalog import backend_configs
from .registry import BackendRegistry

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["apply_catalog", "apply_catalog_soon"]

log = logging.getLogger("sovhub.backends")


async def apply_catalog(hub: Hub) -> tuple[list[str], list[str]]:
    """Serve the catalog as stored now: (names started, names retired); nothing while the hub is not serving."""
    registry = hub.services.get(BackendRegistry)
    if not registry.running:
        return [], []
    configs = await anyio.to_thread.run_sync(backend_configs, hub)
    egress = hub.services.get(Egress)
    # Allowed before a new upstream starts (it may ask for its models), refused after one leaves.
    egress.allow_backends([c.url for c in [*configs, *(b.config for b in registry.backends)] if c.url])
    try:
        return await registry.reload(configs)
    finally:
        egress.allow_backends([c.url for c in configs if c.url])


def apply_catalog_soon(hub: Hub) -> None:
    """From a worker thread: schedule :func:`apply_catalog` on the loop the backends serve on."""
    registry = hub.services.get(BackendRegistry)
    loop = registry.loop
    if not registry.running or loop is None or loop.is_closed():
        return
    future = asyncio.run_coroutine_threadsafe(apply_catalog(hub), loop)
    future.add_done_callback(_log_failure)


def _log_failure(future: concurrent.futures.Future[tuple[list[str], list[str]]]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("applying the backend catalog changed by another replica failed: %s", exc)
