"""The access built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from ..hookspecs import hookimpl
from ..services import Provide

if TYPE_CHECKING:
    import click

    from ..admission import AdmissionControl
    from ..hub import Hub
    from ..pipeline import RoutePolicy


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from ..egress import Egress
    from .oidc import OidcClients
    from .redis_conn import AccessRedis
    from .registry import OrgRegistry
    from .state import AccessState
    from .throttle import LoginThrottle, build_login_throttle

    return [
        Provide(AccessRedis, AccessRedis),
        Provide(AccessState, AccessState),
        Provide(LoginThrottle, build_login_throttle, needs=(AccessRedis,)),
        Provide(OidcClients, OidcClients, needs=(Egress,)),
        Provide(OrgRegistry, OrgRegistry),
    ]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .api import router as organization
    from .auth_routes import router as auth

    return [organization, auth]


@hookimpl
def sovhub_route_policies(hub: Hub) -> list[RoutePolicy]:
    from .tiers import TierPolicy

    return [TierPolicy(hub)]


@hookimpl
def sovhub_admission(hub: Hub) -> list[AdmissionControl]:
    from .quotas import QuotaControl

    return [QuotaControl(hub)]


@hookimpl
def sovhub_egress_hosts(hub: Hub) -> list[str]:
    hosts = []
    for idp in hub.settings.access.idps.values():
        hosts.append(httpx.URL(idp.issuer).host)
        hosts += idp.extra_hosts
    return [h for h in hosts if h]


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    from .redis_conn import AccessRedis
    from .state import AccessState

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with hub.services.get(AccessState).refreshing():
            try:
                yield
            finally:
                await hub.services.get(AccessRedis).close()

    return lifespan()


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_identities, export_person_access
    from .session_store import export_sessions

    return {**export_identities(hub, user_id), **export_person_access(hub, user_id),
            "web_sessions": export_sessions(hub, user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_identities, erase_person_access
    from .session_store import erase_sessions

    # Ends every session at once (each request reads its row), and removes the addresses and browsers.
    erase_sessions(hub, user_id)
    erase_identities(hub, user_id)
    erase_person_access(hub, user_id)


@hookimpl
def sovhub_commands(cli: click.Group) -> None:
    from .cli import add_commands

    add_commands(cli)


@hookimpl
def sovhub_transparency(hub: Hub) -> dict[str, Any]:
    from sqlalchemy import func, select

    from .tables import ModelTier, OrgAccess

    with hub.db.session() as s:
        verified = s.scalar(select(func.count()).select_from(OrgAccess).where(OrgAccess.verified_at.is_not(None)))
        tiers = dict(s.execute(select(ModelTier.tier, func.count()).group_by(ModelTier.tier)).all())
    return {"access": {"verified_organizations": int(verified or 0), "models_by_tier": tiers,
                       "identity_providers": sorted(hub.settings.access.idps)}}

