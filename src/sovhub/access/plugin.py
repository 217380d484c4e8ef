"""The access built-in plugin: its hooks are registered like any third-party plugin's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from ..hub import Hub


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .api import router as organization
    from .auth_routes import router as auth

    return [organization, auth]


@hookimpl
def sovhub_route_policies(hub: Hub) -> list[Any]:
    from .tiers import TierPolicy

    return [TierPolicy(hub)]


@hookimpl
def sovhub_admission(hub: Hub) -> list[Any]:
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
    from .state import access_state

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with access_state(hub).refreshing():
            try:
                yield
            finally:
                redis = hub.legacy.pop("access_redis", None)
                if redis is not None:
                    await redis.aclose()

    return lifespan()


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_identities
    from .session_store import export_sessions

    return {**export_identities(hub, user_id), "web_sessions": export_sessions(hub, user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_identities
    from .session_store import erase_sessions

    # Ends every session at once (each request reads its row), and removes the addresses and browsers.
    erase_sessions(hub, user_id)
    erase_identities(hub, user_id)


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

