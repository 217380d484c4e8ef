"""The shutdown drain: what SIGTERM starts (see :mod:`.server` for the uvicorn side).

``begin()`` turns readiness off at once (``/readyz`` answers 503 ``draining``) while the listener
stays open and requests are still served: a load balancer needs a few probe periods to stop
sending. ``server.drain_seconds`` after the signal, ``cut()`` interrupts every answer still
running: each ends with an in-band error (a stream: an error event, then ``[DONE]``; otherwise a
503), is metered like any other end, and then the process flushes its usage and exits.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Drain", "Interruptible"]


class Interruptible(Protocol):
    def interrupt(self) -> None:
        """End this answer now, with an in-band error, metered."""


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self.started_at: float | None = None
        self.cut_count = 0
        self._running: set[Interruptible] = set()

    def begin(self) -> None:
        """Start draining (called from a signal handler: plain assignments only)."""
        if not self.draining:
            self.started_at = time.monotonic()
            self.draining = True

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def track(self, answer: Interruptible) -> None:
        self._running.add(answer)

    def untrack(self, answer: Interruptible) -> None:
        self._running.discard(answer)

    def cut(self) -> int:
        """Interrupt every answer still running; returns how many."""
        running = list(self._running)
        for answer in running:
            answer.interrupt()
        self.cut_count += len(running)
        return len(running)
