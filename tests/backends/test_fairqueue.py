from __future__ import annotations

import asyncio

from sovhub.backends.fairqueue import FairQueue


async def test_round_robin_across_owners() -> None:
    q = FairQueue()
    order: list[str] = []

    async def job(owner: str, tag: str) -> None:
        await q.acquire(owner)
        order.append(tag)
        await asyncio.sleep(0)
        q.release()

    await q.acquire("holder")
    tasks = [asyncio.create_task(job("flood", f"f{i}")) for i in range(4)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("polite", "p0")))
    await asyncio.sleep(0)
    q.release()
    await asyncio.gather(*tasks)
    # The single request of `polite` is served second, not after all four of `flood`.
    assert order == ["f0", "p0", "f1", "f2", "f3"]
    assert q.waiting == 0


async def test_cancelled_waiter_does_not_block_others() -> None:
    q = FairQueue()
    await q.acquire("a")
    waiter = asyncio.create_task(q.acquire("b"))
    other = asyncio.create_task(q.acquire("c"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    q.release()
    await asyncio.wait_for(other, 1)
    q.release()
    assert q.waiting == 0
    await asyncio.wait_for(q.acquire("d"), 1)
