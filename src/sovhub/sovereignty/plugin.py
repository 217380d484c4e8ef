"""The sovereignty built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..fleet.invalidation import Invalidations
from ..fleet.leases import Leases
from ..hookspecs import hookimpl
from ..services import Provide
from ..tasks import cancel_and_wait

if TYPE_CHECKING:
    import click

    from ..events import Event
    from ..hub import Hub
    from ..pipeline import ChatInterceptor, RoutePolicy
    from .content_store import ConversationStore

log = logging.getLogger("sovhub.sovereignty")


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from .cli import add_commands

    add_commands(cli)


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from .content_store import ConversationStore
    from .crypto import ContentVault

    return [Provide(ConversationStore, _conversation_store, needs=(ContentVault, Invalidations))]


def _conversation_store(hub: Hub) -> ConversationStore:
    from .content_store import ConversationStore

    store = ConversationStore(hub)
    # An organization's retention changed elsewhere (zero retention: store nothing more) applies here at once,
    # not when the cached value ages out.
    def forget(event: str) -> None:
        if event in ("retention.set", "organization.erased", "resubscribed"):
            store.forget_retention()

    hub.services.get(Invalidations).on_change(forget)
    return store


@hookimpl
def sovhub_init(hub: Hub) -> None:
    from .audit import ensure_signing_key

    # The master key was created (new data dir) or proved (existing one) when the hub built its vault.
    ensure_signing_key(hub)


@hookimpl
def sovhub_event(hub: Hub, event: Event) -> None:
    from .audit import record_event
    from .residency import warn_noncompliant_backend

    record_event(hub, event)
    if event.name == "retention.set":
        from .content_store import ConversationStore

        if ConversationStore in hub.services:
            hub.services.get(ConversationStore).forget_retention()
    if event.name == "backend.added":
        warn_noncompliant_backend(hub, event)


@hookimpl
def sovhub_route_policies(hub: Hub) -> list[RoutePolicy]:
    from .residency import ResidencyPolicy

    return [ResidencyPolicy(hub)]


@hookimpl
def sovhub_chat_interceptors(hub: Hub) -> list[ChatInterceptor]:
    from .content_store import ContentRecorder

    return [ContentRecorder(hub)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .api import router

    return [router]


@hookimpl
def sovhub_transparency(hub: Hub) -> dict[str, Any]:
    from .transparency import own_section

    return own_section(hub)


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_own

    return export_own(hub, user_id)


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_own

    erase_own(hub, user_id)


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    from .rights import export_org_conversations

    return export_org_conversations(hub, org_id)


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    from .rights import erase_org_conversations

    erase_org_conversations(hub, org_id)


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    return _lifespan(hub)


@contextlib.asynccontextmanager
async def _lifespan(hub: Hub) -> AsyncIterator[None]:
    from .audit import sign_once
    from .content_store import ConversationStore

    await asyncio.to_thread(sovhub_init, hub)
    store = hub.services.get(ConversationStore)
    await store.start()
    # Periodic work runs once across replicas: each round goes to the replica that takes its lease.
    leases = hub.services.get(Leases)
    settings = hub.settings.sovereignty
    tasks = [asyncio.create_task(
        leases.every("retention-purge", settings.purge_interval_s, lambda: _purge_once(hub), first_after=0),
        name="sovhub-retention-purge",
    )]
    if settings.audit_sign_interval_s > 0:
        tasks.append(asyncio.create_task(
            leases.every("audit-sign", settings.audit_sign_interval_s, lambda: sign_once(hub)),
            name="sovhub-audit-signer",
        ))
    try:
        yield
    finally:
        await cancel_and_wait(tasks)
        await store.close()


async def _purge_once(hub: Hub) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from .content_store import purge_expired

    try:
        deleted = await asyncio.to_thread(purge_expired, hub)
        if deleted:
            log.info("retention purge deleted %d conversations", deleted)
    except SQLAlchemyError as exc:
        log.error("retention purge failed, will retry: %s", exc)
