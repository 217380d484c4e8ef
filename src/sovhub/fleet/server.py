"""uvicorn, draining on SIGTERM instead of closing its listener at once (see :mod:`.drain`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from .drain import Drain

__all__ = ["DrainingServer"]

log = logging.getLogger("sovhub.fleet")

#: After the cut, interrupted answers write their error and [DONE] in milliseconds; this bounds it.
AFTER_CUT_S = 2.0


class DrainingServer(uvicorn.Server):
    """SIGTERM (or Ctrl+C): drain for ``server.drain_seconds``, then shut down; a second signal: now.

    `idle`, for a process no load balancer sends to (the batch worker): the drain ends as soon as it
    says True, instead of waiting the whole drain for a balancer to notice.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain, idle: Callable[[], bool] | None = None) -> None:
        super().__init__(config)
        self.drain = drain
        self.idle = idle
        self._cut_at: float | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.drain.seconds <= 0 or not self.started:
            self.drain.begin()
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        self.drain.begin()

    async def on_tick(self, counter: int) -> bool:
        drain = self.drain
        if drain.draining and not self.should_exit:
            if not self._announced:  # not from the signal handler: logging takes locks
                self._announced = True
                log.info("draining for %.0f s: /readyz answers 503, %d answer(s) in flight",
                         drain.seconds, drain.in_flight)
            if self._cut_at is None and self.idle is not None and self.idle():
                log.info("drained after %.1f s: nothing left running", drain.elapsed)
                self.should_exit = True
            elif self._cut_at is None and drain.elapsed >= drain.seconds:
                self._cut_at = time.monotonic()
                cut = drain.cut()
                log.info("drain over: %d answer(s) still running end with an in-band error", cut)
            elif self._cut_at is not None and (drain.in_flight == 0 or time.monotonic() - self._cut_at > AFTER_CUT_S):
                self.should_exit = True
        return await super().on_tick(counter)
