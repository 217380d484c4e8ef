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


async def test_background_waiters_go_after_every_interactive_one() -> None:
    q = FairQueue()
    await q.acquire("holder")
    order: list[str] = []

    async def take(name: str, background: bool) -> None:
        await q.acquire(name, background=background)
        order.append(name)
        q.release()

    batch = asyncio.create_task(take("batch", True))
    await asyncio.sleep(0)
    users = [asyncio.create_task(take(f"user{i}", False)) for i in range(2)]
    await asyncio.sleep(0)
    assert q.waiting == 3 and q.interactive_waiting == 2
    q.release()
    await asyncio.gather(batch, *users)
    assert order == ["user0", "user1", "batch"]  # queued first, served last


async def test_a_cancelled_background_waiter_leaves_the_lane() -> None:
    q = FairQueue()
    await q.acquire("holder")
    task = asyncio.create_task(q.acquire("batch", background=True))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert q.waiting == 0
    q.release()
    await asyncio.wait_for(q.acquire("next"), 1)  # the resource is free again


async def test_an_interactive_waiter_preempts_the_background_holder() -> None:
    q = FairQueue()
    stopped: list[str] = []
    await q.acquire("batch", background=True, preempt=lambda: stopped.append("batch"))
    waiter = asyncio.create_task(q.acquire("user"))
    await asyncio.sleep(0)
    assert stopped == ["batch"]  # told to stop at its next token
    q.release()
    await asyncio.wait_for(waiter, 1)
    other = asyncio.create_task(q.acquire("user2"))
    await asyncio.sleep(0)
    assert stopped == ["batch"]  # interactive holders are never preempted
    q.release()
    await asyncio.wait_for(other, 1)
    q.release()
