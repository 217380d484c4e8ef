"""The fleet's Redis connections (``access.redis_url``) and this replica's id.

The asynchronous client serves the event loop (subscriptions, leases) and is opened by the
lifespan; the synchronous one publishes from wherever a change is made (a request's worker
thread, the CLI, which has no event loop) and connects on first use.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis

    from ..hub import Hub

__all__ = ["FleetRedis"]

#: A change is published from the thread that made it: a Redis that does not answer must not hold it long.
PUBLISH_TIMEOUT_S = 0.5


class FleetRedis:
    def __init__(self, hub: Hub) -> None:
        self.url = hub.settings.access.redis_url
        self.prefix = hub.settings.access.redis_prefix
        #: Unique per process, also when several replicas share a host name (and a data dir).
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._aio: aioredis.Redis | None = None
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def aio(self) -> aioredis.Redis | None:
        """The event loop's client, between :meth:`open` and :meth:`close` (None without Redis)."""
        return self._aio

    def open(self) -> None:
        if self.url and self._aio is None:
            import redis.asyncio as aioredis

            self._aio = aioredis.Redis.from_url(
                self.url, decode_responses=True, socket_connect_timeout=2, health_check_interval=10,
            )

    async def close(self) -> None:
        client, self._aio = self._aio, None
        if client is not None:
            await client.aclose()
        with self._lock:
            sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    def sync(self) -> Any:
        """The thread-safe publishing client (a connection pool), made on first use; None without Redis."""
        if not self.url:
            return None
        with self._lock:
            if self._sync is None:
                import redis

                self._sync = redis.Redis.from_url(
                    self.url, decode_responses=True, socket_connect_timeout=PUBLISH_TIMEOUT_S,
                    socket_timeout=PUBLISH_TIMEOUT_S,
                )
            return self._sync
