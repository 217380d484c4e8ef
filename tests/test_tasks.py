"""sovhub.tasks: a lifespan's background tasks are all cancelled, then each waited for."""

from __future__ import annotations

import asyncio

import pytest

from sovhub.tasks import cancel_and_wait


def test_every_task_is_cancelled_before_any_is_waited_for() -> None:
    order: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append(name)
            await asyncio.sleep(0.01)  # slow to stop: the other must already be cancelled meanwhile
            raise

    async def main() -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(forever("a")), asyncio.create_task(forever("b"))]
        await asyncio.sleep(0)
        await cancel_and_wait([*tasks, None])
        return tasks

    tasks = asyncio.run(main())
    assert sorted(order) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)


def test_a_task_that_failed_on_its_own_is_raised_not_swallowed() -> None:
    async def broken() -> None:
        raise RuntimeError("the loop died")

    async def main() -> None:
        task = asyncio.create_task(broken())
        await asyncio.sleep(0.01)
        await cancel_and_wait([task])

    with pytest.raises(RuntimeError, match="the loop died"):
        asyncio.run(main())
