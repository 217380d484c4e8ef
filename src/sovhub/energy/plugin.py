"""Energy and carbon as a built-in plugin: the accountant as a typed service, its pollers in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from ..egress import Egress
from ..hookspecs import hookimpl
from ..services import Provide
from ..tasks import cancel_and_wait
from .accountant import EnergyAccountant

if TYPE_CHECKING:
    import click

    from ..hub import Hub


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [Provide(EnergyAccountant, EnergyAccountant)]


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from .cli import add_commands

    add_commands(cli)


@hookimpl
def sovhub_egress_hosts(hub: Hub) -> list[str]:
    s = hub.settings.energy
    urls = list(s.gpu_metrics.values())
    if s.intensity == "electricitymaps":
        urls.append(s.electricitymaps_url)
    return [h for h in (httpx.URL(u).host for u in urls) if h]


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    from .sources import poll_gpus, poll_intensity

    accountant = hub.services.get(EnergyAccountant)
    http = hub.services.get(Egress).http
    tasks = []
    if hub.settings.energy.gpu_metrics:
        tasks.append(asyncio.create_task(poll_gpus(hub, accountant, http), name="sovhub-energy-gpus"))
    if hub.settings.energy.intensity == "electricitymaps":
        tasks.append(asyncio.create_task(poll_intensity(hub, accountant, http), name="sovhub-energy-intensity"))
    try:
        yield
    finally:
        await cancel_and_wait(tasks)


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .page import router

    return [router]


@hookimpl
def sovhub_transparency(hub: Hub) -> dict[str, Any]:
    from .report import sustainability

    data = sustainability(hub, 30)
    return {"sustainability": {"last_30_days": data["total"], "work_moved_to_greener_hours": data["shifted"],
                               "pue": data["pue"], "contracted_renewable_share": data["contracted_renewable_share"],
                               "intensity_source": data["intensity_source"], "page": "/sustainability"}}
