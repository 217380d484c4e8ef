"""The one Redis client of the access plugin (None when access.redis_url is unset)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["redis_client"]


def redis_client(hub: Hub) -> Any:
    url = hub.settings.access.redis_url
    if not url:
        return None
    client = hub.legacy.get("access_redis")
    if client is None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        hub.legacy["access_redis"] = client
    return client
