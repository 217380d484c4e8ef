"""The core as a built-in plugin: the hub's shared services, the OpenAI-compatible routes, operations.

Its services are the ones every other capability may rely on (the text embedder, metrics, the key cache, the
egress transports, the content vault that also seals upstream keys, the chat service).
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from ..hub import Hub
from ..services import Provide


@hookimpl
def sovhub_services(hub: Hub) -> list[Provide[Any]]:
    from ..accounts import KeyCache
    from ..backends.registry import BackendRegistry
    from ..egress import Egress
    from ..embedder import Embedder
    from ..fleet.drain import Drain
    from ..metering import Meter
    from ..observability import Metrics
    from ..sovereignty.crypto import ContentVault, open_vault
    from .chat.service import ChatService

    return [
        Provide(Embedder, lambda hub: Embedder(hub.settings.embeddings_model_id)),
        Provide(Metrics, lambda hub: Metrics()),
        Provide(KeyCache, lambda hub: KeyCache(hub.settings.key_cache_ttl_s)),
        Provide(Egress, Egress),
        Provide(ContentVault, open_vault),
        Provide(BackendRegistry, BackendRegistry),
        Provide(Meter, Meter),
        Provide(ChatService, ChatService, needs=(Metrics, BackendRegistry, Drain)),
    ]


@hookimpl
def sovhub_routers(hub: Hub) -> list[Any]:
    from . import ops
    from .chat.router import router as chat
    from .embeddings.router import router as embeddings
    from .keys import router as keys
    from .models.router import router as models

    # With a metrics port, /metrics is not routed here at all (api/metrics_listener.py serves it).
    own_metrics = [ops.metrics_router] if hub.settings.metrics_port is None else []
    return [ops.router, *own_metrics, models, chat, embeddings, keys]


@hookimpl
def sovhub_export_user(hub: Hub, user_id: int) -> dict[str, Any]:
    from .rights import export_usage

    return export_usage(hub, user_id)


@hookimpl
def sovhub_erase_user(hub: Hub, user_id: int) -> None:
    from .rights import erase_usage_link

    erase_usage_link(hub, user_id)


@hookimpl
def sovhub_export_org(hub: Hub, org_id: int) -> dict[str, Any]:
    from .rights import export_org_usage

    return export_org_usage(hub, org_id)


@hookimpl
def sovhub_erase_org(hub: Hub, org_id: int) -> None:
    from .rights import erase_org_usage

    erase_org_usage(hub, org_id)
