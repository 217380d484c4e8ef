"""A fair queue for one exclusive resource (a llama.cpp context).

Waiters are grouped by owner (an API key or a person) and served round-robin, so one client
sending a hundred requests cannot starve another sending one. Background waiters (batch lines)
form a second lane, served only when no interactive request waits: batches use idle capacity.
A background holder may give a ``preempt`` callback: an interactive request that has to wait
calls it, so the batch line stops at its next token (and is run again later) instead of making
the interactive request wait for its whole answer.

A ``grace_s`` keeps the background lane closed for that long after the last interactive request
ended: people send a follow-up within seconds, and a batch line started in between would begin a
prompt evaluation that llama.cpp cannot interrupt (the follow-up waits for it, and finds the
context's cached prompt prefix replaced by the batch line's).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FairQueue"]


class FairQueue:
    def __init__(self, grace_s: float = 0.0) -> None:
        self.grace_s = grace_s
        #: Loop time before which no background waiter is served (the grace after interactive work).
        self._quiet_until = 0.0
        self._holder_background = False
        self._timer: asyncio.TimerHandle | None = None
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
        loop = asyncio.get_running_loop()
        # Background waiters can queue behind a free resource only during the grace: an interactive
        # request then takes it at once.
        free = not self._busy and not self._waiters
        if free and (not background or (not self._background and loop.time() >= self._quiet_until)):
            self._busy = True
            self._holder_background = background
            self._preempt = preempt if background else None
            return
        fut: asyncio.Future[None] = loop.create_future()
        if background:
            self._background.append((fut, preempt))
            if not self._busy:
                self._serve_background()  # free but in the grace: served when it ends
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
        if not self._holder_background and self.grace_s > 0:
            self._quiet_until = asyncio.get_running_loop().time() + self.grace_s
        self._holder_background = False
        while self._waiters:
            owner, queue = next(iter(self._waiters.items()))
            fut = queue.popleft()
            del self._waiters[owner]
            if queue:
                self._waiters[owner] = queue  # back of the line for this owner's next request
            if not fut.done():
                fut.set_result(None)
                return
        self._busy = False
        self._serve_background()

    def _serve_background(self) -> None:
        """Hand the free resource to the first background waiter, or once the grace has passed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or self._waiters:
            return
        loop = asyncio.get_running_loop()
        wait = self._quiet_until - loop.time()
        if self._background and wait > 0:
            self._timer = loop.call_later(wait, self._serve_background)
            return
        while self._background:
            fut, preempt = self._background.popleft()
            if not fut.done():
                self._busy = True
                self._holder_background = True
                self._preempt = preempt
                fut.set_result(None)
                return

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
