"""A background batch writer: append in O(1) on the request path, write in batches off it.

Subclasses give `write(batch) -> int` (run in a worker thread) and the flush interval. A failed
write puts the batch back for the next try instead of dropping it; `close()` flushes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

__all__ = ["BatchWriter"]

T = TypeVar("T")
log = logging.getLogger("sovhub.batching")

# Batched writes are background work: their thread runs at a lower CPU priority than the event
# loop, so that a flush (hundreds of rows each second under load) does not take the core from
# the requests in flight. One thread for every writer: writes are short and SQLite has one writer.
WRITER_NICE = 10
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _lower_priority() -> None:
    try:  # Linux: a thread id is a process id for setpriority, so this lowers this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
    except (AttributeError, OSError, PermissionError) as exc:  # other systems: same priority, still correct
        log.debug("batch writer runs at normal priority: %s", exc)


def writer_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="sovhub-writer", initializer=_lower_priority)
        return _executor


class BatchWriter(Generic[T]):
    name = "batch-writer"

    def __init__(self, *, interval: float, batch_size: int = 500, max_pending: int = 1_000_000) -> None:
        self.interval = interval
        self.batch_size = batch_size
        self._buffer: deque[T] = deque(maxlen=max_pending)
        # asyncio's primitives belong to one event loop; a writer outlives an app (the hub it
        # belongs to may serve one app after another, as tests do), so each loop gets its own.
        self._runs: dict[asyncio.AbstractEventLoop, tuple[asyncio.Task[None], asyncio.Event, asyncio.Event]] = {}
        #: The loops whose run sleeps on an empty buffer, and the event that wakes it (see `_run`).
        self._idle: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self.written = 0

    def append(self, item: T) -> None:
        self._buffer.append(item)
        if self._idle:  # the first record after a quiet spell: wake the writer (from any thread)
            for loop, wake in list(self._idle.items()):
                self._idle.pop(loop, None)
                with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                    loop.call_soon_threadsafe(wake.set)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def write(self, batch: list[T]) -> int:
        """Persist one batch (in a worker thread); return how many rows were written."""
        raise NotImplementedError

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop in self._runs:
            return
        stopping, wake = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(self._run(stopping, wake), name=f"sovhub-{self.name}")
        self._runs[loop] = (task, stopping, wake)

    async def _run(self, stopping: asyncio.Event, wake: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            if not self._buffer:
                # Nothing to write: sleep until a record comes (or the writer stops) instead of waking
                # every interval for nothing. Registered before the second look, so none is missed.
                wake.clear()
                self._idle[loop] = wake
                if not self._buffer:
                    await wake.wait()
                self._idle.pop(loop, None)
            # Then the interval: the records that follow the first one join its batch.
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            await self.flush()

    async def flush(self) -> int:
        """Write everything appended so far; returns once it is written, even by a flush already running."""
        # One flush at a time: a caller that flushes to read its own rows back (an export, a test)
        # must wait for the periodic flush that may have just taken them off the buffer.
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        async with lock:
            return await self._flush()

    async def _flush(self) -> int:
        total = 0
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                total += await asyncio.get_running_loop().run_in_executor(writer_executor(), self.write, batch)
            except SQLAlchemyError as exc:
                log.error("%s: write failed, will retry: %s", self.name, exc)
                self._buffer.extendleft(reversed(batch))
                break
        self.written += total
        return total

    async def close(self) -> None:
        run = self._runs.pop(asyncio.get_running_loop(), None)
        if run is not None:
            task, stopping, wake = run
            stopping.set()
            wake.set()
            await task
        await self.flush()
