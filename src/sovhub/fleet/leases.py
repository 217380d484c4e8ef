"""Periodic work that runs once across replicas, not once per replica.

Each replica keeps its own timer; before a run it takes the job's lease in Redis
(``SET <prefix>lease:<job> <replica> NX PX``) for 90% of the interval. Whoever gets it runs the
job; the others skip that round. A replica that dies holding a lease loses it when it expires,
and the next replica to tick takes over, so the job never stops for longer than one interval.
Without Redis there is one replica (the hub's quotas are per process then too): it always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from ..tasks import cancel_and_wait
from .redis import FleetRedis

__all__ = ["Leases", "Periodic", "purge_round"]

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


#: One periodic job: its lease name, its interval in seconds, and one round of it.
Periodic = tuple[str, float, Callable[[], Awaitable[object]]]


def purge_round(work: Callable[[], int], what: str, on_deleted: Callable[[int], None] | None = None,
                ) -> Callable[[], Awaitable[None]]:
    """One round of a purge: `work` (a blocking function returning how many rows went) off the loop.

    A database error is logged and the round skipped; the next tick tries again.
    """

    async def run() -> None:
        try:
            deleted = await asyncio.to_thread(work)
        except SQLAlchemyError as exc:
            log.error("purge of %s failed, will retry: %s", what, exc)
            return
        if deleted:
            log.info("purge deleted %d %s", deleted, what)
            if on_deleted is not None:
                on_deleted(deleted)

    return run


@contextlib.asynccontextmanager
async def leased_loops(leases: Leases, *jobs: Periodic) -> AsyncIterator[None]:
    """Run each job every interval, once across replicas, for as long as the context is open."""
    tasks = [asyncio.create_task(leases.every(name, interval, run, first_after=0), name=f"sovhub-{name}")
             for name, interval, run in jobs]
    try:
        yield
    finally:
        await cancel_and_wait(tasks)
