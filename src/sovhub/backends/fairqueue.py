"""A fair queue for one exclusive resource (a llama.cpp context).

Waiters are grouped by owner (an API key or a person) and served round-robin, so one client
sending a hundred requests cannot starve another sending one. Background waiters (batch lines)
form a second lane, served only when no interactive request waits: batches use idle capacity.
A background holder may give a ``preempt`` callback: an interactive request that has to wait
calls it, so the batch line stops at its next token (and is run again later) instead of making
the interactive request wait for its whole answer.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FairQueue"]


class FairQueue:
    def __init__(self) -> None:
        self._waiters: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._background: deque[tuple[asyncio.Future[None], Callable[[], None] | None]] = deque()
        self._busy = False
        #: How to stop the background work holding the resource now (None: interactive work holds it).
        self._preempt: Callable[[], None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values()) + len(self._background)

    @property
    def interactive_waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    async def acquire(self, owner: str, *, background: bool = False,
                      preempt: Callable[[], None] | None = None) -> None:
        if not self._busy and not self._waiters and not self._background:
            self._busy = True
            self._preempt = preempt if background else None
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if background:
            self._background.append((fut, preempt))
        else:
            self._waiters.setdefault(owner, deque()).append(fut)
            stop, self._preempt = self._preempt, None
            if stop is not None:
                stop()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # We were handed the resource as we were cancelled: pass it on.
                self.release()
            elif background:
                self._background = deque(item for item in self._background if item[0] is not fut)
            else:
                self._discard(owner, fut)
            raise

    def release(self) -> None:
        self._preempt = None
        while self._waiters:
            owner, queue = next(iter(self._waiters.items()))
            fut = queue.popleft()
            del self._waiters[owner]
            if queue:
                self._waiters[owner] = queue  # back of the line for this owner's next request
            if not fut.done():
                fut.set_result(None)
                return
        while self._background:
            fut, preempt = self._background.popleft()
            if not fut.done():
                self._preempt = preempt
                fut.set_result(None)
                return
        self._busy = False

    def _discard(self, owner: str, fut: asyncio.Future[None]) -> None:
        queue = self._waiters.get(owner)
        if queue is None:
            return
        try:
            queue.remove(fut)
        except ValueError:
            return
        if not queue:
            del self._waiters[owner]
