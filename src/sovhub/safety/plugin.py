"""The safety built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from ..hub import Hub

log = logging.getLogger("sovhub.safety")

_FLUSH_EVERY_S = 2.0


def _built_guards(hub: Hub) -> dict[str, Any]:
    """The built-in guards, built once per hub on first use and shared (they hold models)."""
    guards: dict[str, Any] | None = hub.legacy.get("safety.guards")
    if guards is not None:
        return guards
    from .pipeline import get_runtime

    wanted = hub.settings.safety.guards
    guards = {}
    if "semantic" in wanted:
        from .encoders import build_semantic_guard

        guards["semantic"] = build_semantic_guard(hub.settings, hub.embedder)
    if "lexicon" in wanted:
        guards["lexicon"] = _lexicon_guard()
    if "pii" in wanted:
        guards["pii"] = get_runtime(hub).pii_guard
    hub.legacy["safety.guards"] = guards
    return guards


def _lexicon_guard() -> Any:
    try:
        from .lexicon import LexiconGuard
    except ModuleNotFoundError as exc:  # built in parallel; the pipeline runs without it meanwhile
        log.warning("lexicon guard not available: %s", exc)
        return None
    return LexiconGuard()


@hookimpl
def sovhub_guards(hub: Hub) -> list[Any]:
    return [g for g in _built_guards(hub).values() if g is not None]


@hookimpl
def sovhub_chat_interceptors(hub: Hub) -> list[Any]:
    from .pipeline import SafetyInterceptor

    return [SafetyInterceptor(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from ..api.appeals.router import router as appeals
    from ..api.pii.router import router as pii

    routers: list[Any] = [pii, appeals]
    try:
        from ..api.moderations.router import router as moderations
    except ModuleNotFoundError as exc:
        log.warning("moderations endpoint not available: %s", exc)
    else:
        routers.append(moderations)
    return routers


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
    from .pipeline import get_runtime
    from .records import transparency_section

    runtime = get_runtime(hub)
    runtime.ensure_version_recorded()
    runtime.recorder.flush()
    return {"safety": transparency_section(hub)}


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    from .pipeline import get_runtime

    runtime = get_runtime(hub)
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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await anyio.to_thread.run_sync(runtime.recorder.flush)


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_moderation

    return export_moderation(hub, user_id)


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_moderation

    erase_moderation(hub, user_id)
