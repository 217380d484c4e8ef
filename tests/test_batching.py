"""The batch writer's thread: background priority, one thread for every writer, retry on failure."""

from __future__ import annotations

import asyncio
import os
import threading

from sqlalchemy.exc import OperationalError

from sovhub.batching import WRITER_NICE, BatchWriter


class Recorder(BatchWriter[int]):
    def __init__(self, fail: int = 0) -> None:
        super().__init__(interval=60.0, batch_size=2)
        self.fail = fail
        self.seen: list[list[int]] = []
        self.nice: set[int] = set()
        self.threads: set[int] = set()

    def write(self, batch: list[int]) -> int:
        self.threads.add(threading.get_native_id())
        self.nice.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        if self.fail:
            self.fail -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        self.seen.append(batch)
        return len(batch)


def test_writes_run_on_one_lower_priority_thread() -> None:
    a, b = Recorder(), Recorder()
    for i in range(5):
        a.append(i)
        b.append(i)

    async def run() -> None:
        assert await a.flush() == 5 and await b.flush() == 5

    asyncio.run(run())
    assert a.seen == [[0, 1], [2, 3], [4]]
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert a.nice == b.nice == {min(19, main + WRITER_NICE)}
    assert a.threads == b.threads and threading.get_native_id() not in a.threads


def test_a_failed_write_keeps_the_batch_for_the_next_flush() -> None:
    w = Recorder(fail=1)
    for i in range(3):
        w.append(i)

    async def run() -> tuple[int, int]:
        return await w.flush(), await w.flush()

    first, second = asyncio.run(run())
    assert (first, second) == (0, 3)
    assert w.seen == [[0, 1], [2]] and w.pending == 0


def test_a_flush_waits_for_the_one_already_writing() -> None:
    import time

    started = threading.Event()

    class Slow(Recorder):
        def write(self, batch: list[int]) -> int:
            started.set()
            time.sleep(0.2)
            return super().write(batch)

    w = Slow()
    w.append(1)

    async def run() -> int:
        periodic = asyncio.create_task(w.flush())  # takes the row off the buffer, then writes slowly
        while not started.is_set():
            await asyncio.sleep(0.005)
        assert w.pending == 0
        await w.flush()  # the buffer is empty, but the row is not written yet: this must wait
        written = len(w.seen)
        await periodic
        return written

    assert asyncio.run(run()) == 1


def test_one_writer_serves_one_event_loop_after_another_and_two_at_once() -> None:
    # The writer belongs to the hub, which may serve one app after another (or, in tests, two at
    # once, each on its own loop): asyncio's locks and events must not tie it to the first loop.
    import time

    class Slow(Recorder):
        def write(self, batch: list[int]) -> int:
            time.sleep(0.02)
            return super().write(batch)

    w = Slow()

    async def serve(items: range) -> None:
        await w.start()
        for i in items:
            w.append(i)
        await asyncio.gather(w.flush(), w.flush())  # the second waits on the flush lock
        await w.close()

    asyncio.run(serve(range(0, 2)))
    asyncio.run(serve(range(2, 4)))

    other_started, release = threading.Event(), threading.Event()

    async def long_lived() -> None:
        await w.start()
        other_started.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        w.append(99)
        await w.close()

    thread = threading.Thread(target=asyncio.run, args=(long_lived(),))
    thread.start()
    assert other_started.wait(10)
    asyncio.run(serve(range(4, 6)))
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert sorted(x for batch in w.seen for x in batch) == [0, 1, 2, 3, 4, 5, 99]


class Counting(Recorder):
    """A writer that counts its flushes, with a short interval."""

    def __init__(self) -> None:
        super().__init__()
        self.interval = 0.01
        self.flushes = 0

    async def _flush(self) -> int:
        self.flushes += 1
        return await super()._flush()


def test_an_idle_writer_sleeps_until_a_record_comes_from_any_thread() -> None:
    writer = Counting()

    async def run() -> None:
        await writer.start()
        await asyncio.sleep(0.3)  # 30 intervals with nothing to write
        idle_flushes = writer.flushes
        # The first record after the quiet spell, from a worker thread (as a request's thread would).
        await asyncio.to_thread(writer.append, 1)
        for _ in range(100):
            if writer.seen:
                break
            await asyncio.sleep(0.01)
        written = [x for batch in writer.seen for x in batch]
        writer.append(2)  # and one from the loop itself, once it sleeps again
        await asyncio.sleep(0.1)
        await writer.close()
        assert idle_flushes == 0, idle_flushes
        assert written == [1]
        assert [x for batch in writer.seen for x in batch] == [1, 2]

    asyncio.run(run())


def test_close_ends_an_idle_writer_at_once() -> None:
    writer = Counting()
    writer.interval = 30.0

    async def run() -> float:
        await writer.start()
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await writer.close()
        return loop.time() - started

    assert asyncio.run(run()) < 1.0
