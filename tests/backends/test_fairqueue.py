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


# --- the grace after interactive work (batch.interactive_grace_s) ---
# Bounded and margin-safe: the grace is a lower bound the loop's timer guarantees (never earlier), and every wait
# for it to end has a deadline many times the grace.

GRACE = 0.4


async def test_background_waits_out_the_grace_after_an_interactive_request() -> None:
    q = FairQueue(grace_s=GRACE)
    loop = asyncio.get_running_loop()
    await q.acquire("user")
    batch = asyncio.create_task(q.acquire("batch", background=True))
    await asyncio.sleep(0)
    q.release()
    released = loop.time()
    await asyncio.wait_for(batch, 10 * GRACE + 5)
    assert loop.time() - released >= GRACE  # not handed over at release, as without a grace
    q.release()


async def test_a_follow_up_in_the_grace_goes_first_and_extends_it() -> None:
    q = FairQueue(grace_s=GRACE)
    loop = asyncio.get_running_loop()
    events: list[tuple[str, float]] = []

    async def batch_line() -> None:
        await q.acquire("batch", background=True)
        events.append(("batch", loop.time()))
        q.release()

    await q.acquire("user")
    line = asyncio.create_task(batch_line())
    await asyncio.sleep(0)
    q.release()
    await asyncio.sleep(GRACE / 4)
    # The resource is free while a batch line waits: the follow-up takes it at once, no waiting, no preemption.
    await asyncio.wait_for(q.acquire("user"), 0.5 * GRACE)
    events.append(("user", loop.time()))
    q.release()
    second_release = loop.time()
    await asyncio.wait_for(line, 10 * GRACE + 5)
    assert [e[0] for e in events] == ["user", "batch"]
    assert events[1][1] - second_release >= GRACE  # the grace counts from the last interactive request


async def test_a_background_arrival_in_the_grace_waits_and_the_lane_reopens() -> None:
    q = FairQueue(grace_s=GRACE)
    loop = asyncio.get_running_loop()
    await q.acquire("user")
    q.release()
    released = loop.time()
    await asyncio.wait_for(q.acquire("batch", background=True), 10 * GRACE + 5)
    assert loop.time() - released >= GRACE
    q.release()  # a background holder's release starts no grace: the next line runs at once
    await asyncio.wait_for(q.acquire("batch", background=True), GRACE / 2)
    q.release()


async def test_a_cancelled_background_waiter_in_the_grace_leaves_nothing_behind() -> None:
    q = FairQueue(grace_s=GRACE)
    await q.acquire("user")
    q.release()
    task = asyncio.create_task(q.acquire("batch", background=True))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert q.waiting == 0
    await asyncio.sleep(GRACE * 1.5)  # the timer fires on an empty lane
    await asyncio.wait_for(q.acquire("user"), 1)
    q.release()


async def test_without_a_grace_the_lane_is_served_at_release() -> None:
    q = FairQueue()
    await q.acquire("user")
    batch = asyncio.create_task(q.acquire("batch", background=True))
    await asyncio.sleep(0)
    q.release()
    await asyncio.sleep(0)
    assert batch.done()  # the old behaviour: a line starts the moment interactive work ends
    q.release()
