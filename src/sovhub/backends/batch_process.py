"""The embedded model's batch lines in a child process, stopped while interactive requests use the model.

Why a process: one llama.cpp context serves one call at a time, and a call cannot be interrupted
half-way (a prompt evaluation is one call). In-process, an interactive request that arrives while
a batch line evaluates waits for it, however the queue is ordered. A child process with its own
llama.cpp instance of the same GGUF can instead be stopped where it is: ``SIGSTOP`` the moment an
interactive request reaches the model, ``SIGCONT`` once the model has been free of interactive
requests for ``batch.interactive_grace_s``. A stopped process takes no CPU, so the interactive
request finds the machine idle, and the line loses no work: it goes on from the token it was at.

What stays in the parent: everything but the model call. The line is admitted, guarded, metered and
charged by the same chat service as before; its lease is renewed by the runner's heartbeat (a
stopped child renews nothing). The child dies with the parent (``PR_SET_PDEATHSIG`` and the end of
its socket, see :mod:`.batch_child`); a child that dies is started again for the next line, and the
line it was answering fails with a 503 (``WorkLost``) that the runner retries (metered once: the failed attempt's
usage is dropped with it).

Memory: the weights are mapped from the same file, so the page cache holds them once; the child
adds its own interpreter, context (KV cache) and compute buffers. Linux only (stopping a process and
the parent-death signal); elsewhere the backend runs batch lines in-process, preempted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import BackendUnavailable, SovhubError, WorkLost
from .base import CancelToken, ChatChunk

__all__ = ["BatchProcess", "BatchProcessUnavailable", "supported"]

log = logging.getLogger("sovhub.backends.batch_process")

_DEAD = object()
#: Seconds of running (not stopped) time the child may take to load the model.
START_TIMEOUT_S = 120.0
#: After a start that failed, batch lines run in-process for this long before the next try.
RETRY_START_S = 60.0
#: Longest frame read from the child (a chunk with many log probabilities stays far below).
FRAME_LIMIT = 16 * 1024 * 1024
#: How often a waiting line looks at its cancel token (the drain and a lost lease also cancel its task).
CANCEL_POLL_S = 0.25


def supported() -> bool:
    return sys.platform.startswith("linux")


class BatchProcessUnavailable(Exception):
    """The child could not be started: the caller runs the line in-process instead."""


class BatchProcess:
    """One child process serving one embedded backend's batch lines; built and used on the event loop."""

    def __init__(self, model_path: Path, *, threads: int, context: int, grace_s: float, name: str) -> None:
        self.model_path = model_path
        self.threads = threads
        self.context = context
        self.grace_s = grace_s
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        #: Children started (the first and every restart after a crash).
        self.starts = 0
        self.stopped = False
        #: perf_counter() when SIGSTOP was last sent (how soon it took effect is the kernel's: tests read it).
        self.stop_sent_at: float | None = None
        self._holds = 0
        self._resume: asyncio.TimerHandle | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Queue[Any]] = {}
        self._next_id = 0
        self._start_lock = asyncio.Lock()
        self._failed_at: float | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def answering(self) -> int:
        """Lines the loaded child has been given and not finished (0 while it loads)."""
        return len(self._pending) if self._writer is not None else 0

    # --- stopping and resuming ---

    def hold(self) -> None:
        """An interactive request reached the model: the child stops now (if it is not stopped already)."""
        self._holds += 1
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._signal(True)

    def unhold(self) -> None:
        """That request ended: once none is left, the child resumes after the grace."""
        self._holds -= 1
        if self._holds > 0:
            return
        if self.grace_s > 0:
            self._resume = asyncio.get_running_loop().call_later(self.grace_s, self._resume_now)
        else:
            self._resume_now()

    def _resume_now(self) -> None:
        self._resume = None
        if self._holds == 0:
            self._signal(False)

    def _signal(self, stop: bool) -> None:
        pid = self.pid
        if pid is None or self.stopped == stop:
            self.stopped = stop and pid is not None
            return
        try:
            os.kill(pid, signal.SIGSTOP if stop else signal.SIGCONT)
        except ProcessLookupError:  # it died: the reader sees the end of its socket
            return
        self.stopped = stop
        if stop:
            self.stop_sent_at = time.perf_counter()

    # --- the child's life ---

    async def start(self) -> asyncio.StreamWriter:
        """The running child, started if need be; :class:`BatchProcessUnavailable` when it cannot start."""
        async with self._start_lock:
            if self._writer is not None and self.pid is not None:
                return self._writer
            if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_START_S:
                raise BatchProcessUnavailable("the batch process failed to start a moment ago")
            try:
                return await self._spawn()
            except (OSError, BatchProcessUnavailable) as exc:
                self._failed_at = time.monotonic()
                log.warning("%s: batch process did not start (%s); batch lines run in-process for %.0f s",
                            self.name, exc, RETRY_START_S)
                raise BatchProcessUnavailable(str(exc)) from exc

    async def _spawn(self) -> asyncio.StreamWriter:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])  # the child runs this very sovhub
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "sovhub.backends.batch_child", "--model", str(self.model_path),
               "--threads", str(self.threads), "--context", str(self.context), "--fd", str(theirs.fileno()),
               "--parent", str(os.getpid())]
        try:
            # From the event loop's thread: the parent-death signal follows the thread that forked.
            proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.proc = proc
        self.starts += 1
        self.stopped = False
        if self._holds:  # interactive requests run now: it loads once they are done
            self._signal(True)
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=FRAME_LIMIT)
            await self._loaded(reader)
        except BaseException:
            # Failed, timed out, or the line waiting for it was cancelled: no half-started child is left behind.
            if writer is not None:
                writer.close()
            self.proc, self.stopped = None, False
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # SIGKILL ends a stopped process too
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
            raise
        self._writer = writer
        self._failed_at = None
        self._reader_task = asyncio.create_task(self._read(reader, proc), name=f"sovhub-{self.name}-batch")
        log.info("%s: batch process %d serves batch lines", self.name, proc.pid)
        return writer

    async def _loaded(self, reader: asyncio.StreamReader) -> None:
        """Wait for the child's ready frame; time spent stopped (interactive requests running) does not count."""
        running_s = 0.0
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except TimeoutError:
                if not self.stopped:
                    running_s += 1.0
                if running_s > START_TIMEOUT_S:
                    raise BatchProcessUnavailable(f"the model did not load in {START_TIMEOUT_S:.0f} s") from None
                continue
            if not line:
                raise BatchProcessUnavailable("the batch process exited while loading the model")
            if json.loads(line).get("ready"):
                return

    async def _read(self, reader: asyncio.StreamReader, proc: subprocess.Popen[bytes]) -> None:
        try:
            while line := await reader.readline():
                frame = json.loads(line)
                waiting = self._pending.get(int(frame.get("id", -1)))
                if waiting is not None:  # a job the parent gave up on (cancelled) ends unread
                    waiting.put_nowait(frame)
        except (OSError, ValueError) as exc:
            log.error("%s: batch process channel broke: %s", self.name, exc)
        finally:
            if self.proc is proc:
                self._writer = None
                self.proc = None
                self.stopped = False
            for waiting in self._pending.values():
                waiting.put_nowait(_DEAD)
            code = await asyncio.to_thread(_reap, proc)
            if not self._closing:
                log.warning("%s: batch process %d exited (%s); the next batch line starts another",
                            self.name, proc.pid, code)

    async def close(self) -> None:
        self._closing = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # the end of its socket: the child exits
        await self._kill(grace=2.0)
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None

    async def _kill(self, grace: float = 0.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot read the end of its socket
        self.stopped = False
        if grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, grace)
        if proc.returncode is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    # --- one line ---

    async def generate(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any],
                       cancel: CancelToken) -> AsyncGenerator[ChatChunk, None]:
        """The line's chunks from the child, ending with the usage chunk; raises what the in-process path would.

        Raises :class:`BatchProcessUnavailable` before anything was sent when the child cannot start
        (callers that want to fall back call :meth:`start` first).
        """
        writer = await self.start()
        self._next_id += 1
        job = self._next_id
        frames: asyncio.Queue[Any] = asyncio.Queue()
        self._pending[job] = frames
        sent_cancel = ended = False
        counted = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            writer.write(_frame({"op": "generate", "id": job, "messages": messages,
                                 "params": {k: v for k, v in params.items() if not k.startswith("_")}}))
            await writer.drain()
            while True:
                try:
                    frame = await asyncio.wait_for(frames.get(), CANCEL_POLL_S)
                except TimeoutError:
                    if cancel.cancelled and not sent_cancel:
                        sent_cancel = True
                        self._send_cancel(job)
                    continue
                if frame is _DEAD:
                    # Not BackendUnavailable: the model serves interactive requests as before, only this line is lost.
                    raise WorkLost(f"model {model}: the batch process exited mid-answer; the line runs again")
                if "end" in frame:
                    ended = True
                    usage = frame["end"]["usage"]
                    cancel.usage = usage
                    if frame["end"]["error"] is not None:
                        raise _rebuilt(model, frame["end"]["error"])
                    yield {"object": "chat.completion.chunk", "choices": [], "usage": usage}
                    return
                counted = {"prompt_tokens": int(frame["prompt_tokens"]), "completion_tokens": int(frame["tokens"])}
                chunk = frame["chunk"]
                chunk["model"] = model
                yield chunk
        finally:
            self._pending.pop(job, None)
            if not ended:
                # Cut, cancelled, or the child died: it stops at its next token once it runs (a stopped
                # child reads the cancel when resumed); this request does not wait for it.
                if not sent_cancel:
                    self._send_cancel(job)
                cancel.usage = {**counted, "total_tokens": counted["prompt_tokens"] + counted["completion_tokens"]}

    def _send_cancel(self, job: int) -> None:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(_frame({"op": "cancel", "id": job}))


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _rebuilt(model: str, error: dict[str, Any]) -> SovhubError:
    """The child's error as the in-process backend raises it: a hub error by its class, anything else a 503."""
    cls = getattr(errors, str(error.get("class")), None)
    if isinstance(cls, type) and issubclass(cls, SovhubError):
        return cls(str(error["message"]), param=error.get("param"), code=error.get("code"))
    return BackendUnavailable(f"model {model} failed: {error['message']}")


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:  # closed its socket but lives on: it has no work left here
        proc.kill()
        return proc.wait()
