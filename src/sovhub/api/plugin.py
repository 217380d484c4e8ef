"""The core API as a built-in plugin: the OpenAI-compatible routes and operations endpoints."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from ..hub import Hub


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
