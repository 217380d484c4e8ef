"""Background tasks a lifespan owns: stopping them the one way (cancel all, then wait for each)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task first (so none outlives the others waiting), then wait for each to end.

    A task that ends with its cancellation is what was asked for; any other exception it ends
    with is raised, since it is a failure the caller should see.
    """
    owned = [task for task in tasks if task is not None]
    for task in owned:
        task.cancel()
    for task in owned:
        with contextlib.suppress(asyncio.CancelledError):
            await task
