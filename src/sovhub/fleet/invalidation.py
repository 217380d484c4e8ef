"""A change made on one replica (or by the CLI) reaches every replica's caches within a second.

Each replica caches what its hot path reads (verified API keys, tiers, verification, organization
limits) and reloads it on a timer. A change is published on the hub's Redis channel
(``<access.redis_prefix>invalidate``) by the process that made it, right after its transaction
committed; every other replica's subscriber then calls the listeners registered with
:meth:`Invalidations.on_change`, which drop or reload their copies. The timers stay, as the
fallback for a message lost while Redis was unreachable; after a reconnection every listener runs
once, since messages sent meanwhile are gone.

A capability with a cache of its own registers a listener::

    hub.services.get(Invalidations).on_change(lambda event: prices.clear())
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from ..tasks import cancel_and_wait
from .redis import FleetRedis

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["INVALIDATING", "Invalidations", "invalidates"]

log = logging.getLogger("sovhub.fleet")

#: Domain events (``hub.emit``) after which cached copies are stale: keys, organizations, verification,
#: tiers, limits (a person's own too), prices, grants, credits, policy (retention included) and backends.
INVALIDATING = (
    "key.", "org.", "organization.erased", "model.", "tier.", "verification.", "limits.", "price.", "prices.",
    "grant.", "credit.", "credits.", "policy.", "retention.set", "backend.", "user.staff", "person.",
)

Listener = Callable[[str], None]


def invalidates(event: str) -> bool:
    return event.startswith(INVALIDATING)


class Invalidations:
    def __init__(self, hub: Hub, redis: FleetRedis) -> None:
        self.redis = redis
        self.enabled = redis.enabled and hub.settings.server.invalidation
        self.channel = redis.key("invalidate")
        self._listeners: list[Listener] = []
        #: Messages from other replicas applied (and when the last one was), for tests and metrics.
        self.applied = 0
        self.last_applied_at: float | None = None
        self.subscribed: asyncio.Event | None = None

    def on_change(self, listener: Listener) -> None:
        """Call `listener(event_name)` (in a worker thread) when another process changed something cached."""
        self._listeners.append(listener)

    def publish(self, event: str) -> bool:
        """Tell the other replicas; True if Redis took the message. Never raises: the TTLs are the fallback."""
        client = self.redis.sync() if self.enabled else None
        if client is None:
            return False
        message = json.dumps({"event": event, "origin": self.redis.replica_id, "at": time.time()})
        try:
            client.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            log.warning("could not publish %s to the other replicas (their caches expire instead): %s", event, exc)
            return False
        return True

    def apply(self, event: str) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                # One cache failing to reload must not keep the others stale; its TTL still applies.
                log.exception("invalidation listener %r failed for %s", listener, event)
        self.applied += 1
        self.last_applied_at = time.monotonic()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Subscribe for the app's lifetime (nothing to do without Redis)."""
        if not self.enabled or self.redis.aio is None:
            yield
            return
        subscribed = self.subscribed = asyncio.Event()
        task = asyncio.create_task(self._listen(subscribed), name="sovhub-invalidations")
        try:
            # Serve only once subscribed, so no change made after this replica is ready is missed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), timeout=5)
            if not subscribed.is_set():
                log.warning("not subscribed to %s yet; caches rely on their TTLs until Redis answers", self.channel)
            yield
        finally:
            await cancel_and_wait([task])

    async def _listen(self, subscribed: asyncio.Event) -> None:
        client = self.redis.aio
        assert client is not None
        delay, connected_before = 0.1, False
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if connected_before:  # messages sent while we were away are lost: drop everything once
                    await asyncio.to_thread(self.apply, "resubscribed")
                connected_before, delay = True, 0.1
                subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        data = json.loads(message["data"])
                        event, origin = str(data["event"]), data.get("origin")
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignoring a malformed invalidation on %s: %r", self.channel, message["data"])
                        continue
                    if origin == self.redis.replica_id:
                        continue  # this process applied its own change when it made it
                    await asyncio.to_thread(self.apply, event)
            except (RedisError, OSError) as exc:
                subscribed.clear()
                log.warning("invalidation subscription to %s lost, retrying in %.1f s: %s", self.channel, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
