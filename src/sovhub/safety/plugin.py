"""The safety built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ..hookspecs import hookimpl
from ..services import Provide
from ..tasks import cancel_and_wait

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from ..hub import Hub
    from ..pipeline import ChatInterceptor
    from .guards import Guard

log = logging.getLogger("sovhub.safety")

_FLUSH_EVERY_S = 2.0


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from ..embedder import Embedder
    from .builtin import BuiltinGuards, build_moderator
    from .interceptor import SafetyRuntime
    from .moderation import Moderator

    return [
        Provide(SafetyRuntime, SafetyRuntime),
        Provide(BuiltinGuards, BuiltinGuards, needs=(SafetyRuntime, Embedder)),
        Provide(Moderator, build_moderator, needs=(BuiltinGuards, Embedder)),
    ]


@hookimpl
def sovhub_guards(hub: Hub) -> list[Guard]:
    from .builtin import BuiltinGuards

    return hub.services.get(BuiltinGuards).all()


@hookimpl
def sovhub_chat_interceptors(hub: Hub) -> list[ChatInterceptor]:
    from .interceptor import SafetyInterceptor

    return [SafetyInterceptor(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from ..api.appeals.router import router as appeals
    from ..api.moderations.router import router as moderations
    from ..api.pii.router import router as pii

    return [pii, appeals, moderations]


@hookimpl
def sovhub_setup_app(app: FastAPI, hub: Hub) -> None:
    from .restore import RestoreMiddleware

    app.add_middleware(RestoreMiddleware, hub=hub)


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    import click as _click

    from .commands import appeals_group, policy_group

    try:
        from .cli import safety_group
    except ModuleNotFoundError:
        safety_group = _click.Group("safety", help="Safety: moderation, PII, policy and appeals.")
    safety_group.add_command(appeals_group)
    safety_group.add_command(policy_group)
    cli.add_command(safety_group)


@hookimpl
def sovhub_transparency(hub: Hub) -> dict[str, Any]:
    from .interceptor import SafetyRuntime
    from .records import transparency_section

    runtime = hub.services.get(SafetyRuntime)
    runtime.ensure_version_recorded()
    runtime.recorder.flush()
    return {"safety": transparency_section(hub)}


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    from .interceptor import SafetyRuntime

    runtime = hub.services.get(SafetyRuntime)
    if hub.settings.safety.enabled and hub.settings.safety.warm_up:
        # Loads the guard models and runs the protected-speech check set: a policy that would
        # block lawful speech stops the start-up here, before any request.
        await anyio.to_thread.run_sync(runtime.warm)
    else:
        await anyio.to_thread.run_sync(runtime.ensure_version_recorded)

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(_FLUSH_EVERY_S)
            await anyio.to_thread.run_sync(runtime.recorder.flush)

    task = asyncio.create_task(flush_periodically())
    try:
        yield
    finally:
        await cancel_and_wait([task])
        await anyio.to_thread.run_sync(runtime.recorder.flush)


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_moderation

    return export_moderation(hub, user_id)


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_moderation

    erase_moderation(hub, user_id)


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    from .rights import export_org_moderation

    return export_org_moderation(hub, org_id)


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    from .rights import erase_org_moderation

    erase_org_moderation(hub, org_id)
