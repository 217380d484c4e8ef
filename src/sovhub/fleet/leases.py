"""Periodic work that runs once across replicas, not once per replica.

Each replica keeps its own timer; before a run it takes the job's lease in Redis
(``SET <prefix>lease:<job> <replica> NX PX``) for 90% of the interval. Whoever gets it runs the
job; the others skip that round. A replica that dies holding a lease loses it when it expires,
and the next replica to tick takes over, so the job never stops for longer than one interval.
Without Redis there is one replica (the hub's quotas are per process then too): it always runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from .redis import FleetRedis

__all__ = ["Leases"]

log = logging.getLogger("sovhub.fleet")

#: A lease lasts this share of the interval: the next tick (of any replica) finds it free.
LEASE_SHARE = 0.9


class Leases:
    def __init__(self, redis: FleetRedis) -> None:
        self.redis = redis
        #: Runs of each job by this replica.
        self.runs: Counter[str] = Counter()

    async def acquire(self, job: str, seconds: float) -> bool:
        """Take `job`'s lease for `seconds`; False when another replica holds it (or Redis cannot say)."""
        client = self.redis.aio
        if not self.redis.enabled:
            return True
        if client is None:
            return False  # configured but not open (outside the lifespan): do not risk a second run
        try:
            taken = await client.set(self.redis.key(f"lease:{job}"), self.redis.replica_id, nx=True,
                                     px=max(1, int(seconds * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("lease %s: Redis unreachable, skipping this round: %s", job, exc)
            return False
        return bool(taken)

    async def every(self, job: str, interval: float, run: Callable[[], Awaitable[object]], *,
                    first_after: float | None = None) -> None:
        """Run `run()` every `interval` seconds (the first time after `first_after`), once across replicas."""
        await asyncio.sleep(interval if first_after is None else first_after)
        while True:
            if await self.acquire(job, interval * LEASE_SHARE):
                self.runs[job] += 1
                await run()
            await asyncio.sleep(interval)
