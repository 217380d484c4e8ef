"""GenerationThread: every call into one llama.cpp context on one long-lived thread, in order."""

from __future__ import annotations

import threading
import time

import pytest

from sovhub.backends.embedded import GenerationThread


@pytest.fixture
def worker():
    w = GenerationThread("llama-test")
    yield w
    w.stop()


def test_calls_run_in_order_on_one_kept_thread(worker) -> None:
    seen: list[tuple[int, int]] = []

    def call(i: int):
        def run() -> int:
            time.sleep(0.01 if i == 0 else 0)  # the first is slowest: order must still hold
            seen.append((i, threading.get_ident()))
            return i * 10

        return run

    futures = [worker.submit(call(i)) for i in range(3)]
    assert [f.result(timeout=5) for f in futures] == [0, 10, 20]
    assert [i for i, _ in seen] == [0, 1, 2]
    assert len({ident for _, ident in seen}) == 1
    assert seen[0][1] != threading.get_ident()
    # A later call finds the same thread (its OpenMP team and caches are kept).
    assert worker.submit(threading.get_ident).result(timeout=5) == seen[0][1]


def test_an_exception_reaches_the_waiter_and_the_thread_goes_on(worker) -> None:
    def boom() -> None:
        raise ValueError("bad prompt")

    with pytest.raises(ValueError, match="bad prompt"):
        worker.submit(boom).result(timeout=5)
    assert worker.submit(lambda: "still here").result(timeout=5) == "still here"


def test_a_call_runs_even_when_its_waiter_gave_up(worker) -> None:
    # A generation hands the queue slot on when it ends, so it must run even if nobody waits.
    gate = threading.Event()
    ran = threading.Event()
    blocker = worker.submit(gate.wait)
    queued = worker.submit(ran.set)
    assert queued.cancel()  # the waiter is gone before the call started
    gate.set()
    blocker.result(timeout=5)
    assert ran.wait(5)


def test_stop_ends_the_thread_and_a_later_call_starts_a_new_one(worker) -> None:
    first = worker.submit(threading.current_thread).result(timeout=5)
    worker.stop()
    first.join(5)
    assert not first.is_alive()
    second = worker.submit(threading.current_thread).result(timeout=5)
    assert second is not first and second.is_alive() and second.daemon
    assert second.name == "llama-test"


def test_a_thread_that_cannot_start_queues_nothing(worker, monkeypatch) -> None:
    def refuse(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        worker.submit(lambda: None)
    monkeypatch.undo()
    assert worker.submit(lambda: "ok").result(timeout=5) == "ok"
