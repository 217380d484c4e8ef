"""The Files API as a built-in plugin: its store as a typed service, its routes, its purge loop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..services import Provide
from .store import FileStore

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("sovhub.files")


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    return [Provide(FileStore, FileStore)]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from .router import router

    return [router]


@hookimpl
def sovhub_body_limits(hub: Hub) -> dict[str, int]:
    from .upload import MULTIPART_OVERHEAD

    return {"/v1/files": hub.settings.files.max_bytes + MULTIPART_OVERHEAD}


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    return {"files": hub.services.get(FileStore).export_org(org_id)}


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    hub.services.get(FileStore).erase_org(org_id)


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    return {"uploaded_files": hub.services.get(FileStore).export_user(user_id)}


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    hub.services.get(FileStore).unlink_user(user_id)


@hookimpl
def sovhub_lifespan(hub: Hub) -> Any:
    from ..fleet.leases import Leases, leased_loops, purge_round

    purge = purge_round(hub.services.get(FileStore).purge, "expired or unfinished files")
    return leased_loops(hub.services.get(Leases), ("files-purge", hub.settings.files.purge_interval_s, purge))
