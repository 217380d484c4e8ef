"""The hooks sovhub's plugins implement; the built-ins use the very same ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from .admission import AdmissionControl
    from .backends.base import BackendFactory
    from .events import Event
    from .hub import Hub
    from .pipeline import ChatInterceptor, RoutePolicy
    from .safety.guards import Guard
    from .services import Provide

hookspec = pluggy.HookspecMarker("sovhub")
hookimpl = pluggy.HookimplMarker("sovhub")

__all__ = ["hookimpl", "hookspec"]


@hookspec
def sovhub_backend_types() -> dict[str, BackendFactory]:  # type: ignore[empty-body]
    """Return backend kinds this plugin provides, as {kind: factory(hub, config) -> Backend}."""


@hookspec
def sovhub_services(hub: Hub) -> list[Provide[Any]]:  # type: ignore[empty-body]
    """Return the services this plugin provides (sovhub.services.Provide), built once by build_hub.

    Each names its type, a function hub -> instance and the types it needs built first; code
    then asks ``hub.services.get(SomeType)``. Builders must be cheap and must not do I/O that
    can wait for the lifespan (connections, background tasks).
    """


@hookspec
def sovhub_commands(cli: click.Group) -> None:
    """Add commands or command groups to the `sovhub` CLI."""


@hookspec
def sovhub_routers(hub: Hub) -> list[Any]:  # type: ignore[empty-body]
    """Return FastAPI routers to mount on the app."""


@hookspec
def sovhub_setup_app(app: FastAPI, hub: Hub) -> None:
    """Adjust the app after routers are mounted (exception handlers, static files, middleware)."""


@hookspec
def sovhub_lifespan(hub: Hub) -> Any:
    """Return an async context manager entered for the app's lifetime, or None."""


@hookspec
def sovhub_chat_interceptors(hub: Hub) -> list[ChatInterceptor]:  # type: ignore[empty-body]
    """Return interceptors run around every chat completion (guards, storage, language fidelity)."""


@hookspec
def sovhub_route_policies(hub: Hub) -> list[RoutePolicy]:  # type: ignore[empty-body]
    """Return policies that narrow the backends a request may be routed to (residency, tiers)."""


@hookspec
def sovhub_event(hub: Hub, event: Event) -> None:
    """Observe a domain event (org created, key revoked, backend added...); the audit log listens here."""


@hookspec
def sovhub_transparency(hub: Hub) -> dict[str, Any]:  # type: ignore[empty-body]
    """Return a section of counts for the public transparency report."""


@hookspec
def sovhub_guards(hub: Hub) -> list[Guard]:  # type: ignore[empty-body]
    """Return safety guards (`sovhub.safety.guards.Guard`: `name`, `scan(text, lang)`), run as one pipeline."""


@hookspec
def sovhub_egress_hosts(hub: Hub) -> list[str]:  # type: ignore[empty-body]
    """Return host names the hub may connect to (identity providers, registries); backends are added."""


@hookspec
def sovhub_admission(hub: Hub) -> list[AdmissionControl]:  # type: ignore[empty-body]
    """Return admission controls (quotas, rate limits, `sovhub.admission.AdmissionControl`).

    `await admit(admission) -> dict[str, str]` (a `sovhub.admission.Admission`: principal, endpoint,
    model, `reserved` tokens, a `ticket` id) raises RateLimited (or another SovhubError) to refuse,
    holds `reserved` tokens against token limits, and returns headers to add (x-ratelimit-*);
    `await settle(admission, tokens)` replaces the reservation by the tokens used (0: released).
    """


@hookspec
def sovhub_init(hub: Hub) -> None:
    """Prepare what this plugin needs in a new data dir (keys, defaults); must be idempotent."""


@hookspec
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:  # type: ignore[empty-body]
    """Return what this plugin holds about a person, as {section: JSON-able data}, for their export."""


@hookspec
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    """Erase (or unlink) every row this plugin holds about a person; runs after their keys are destroyed."""


@hookspec
def sovhub_restored(hub: Hub) -> None:
    """Rebuild what this plugin derives from its rows (indexes a backup leaves out) after `sovhub restore`."""
