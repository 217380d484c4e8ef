"""The one Redis client of the access plugin (none when access.redis_url is unset)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["AccessRedis"]


class AccessRedis:
    """Holds the client; it connects on first command (in the serving loop) and closes with the app."""

    def __init__(self, hub: Hub) -> None:
        url = hub.settings.access.redis_url
        self.client: Any = None
        if url:
            import redis.asyncio as aioredis

            self.client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
