"""The batch process: the embedded model's batch lines, on their own llama.cpp instance of the same GGUF.

Started and supervised by :class:`~sovhub.backends.batch_process.BatchProcess` as
``python -m sovhub.backends.batch_child``; it never opens the database, the network or the
hub's settings. It talks over one inherited socket, one JSON object per line:

- from the parent: ``{"op": "generate", "id": n, "messages": [...], "params": {...}}`` and
  ``{"op": "cancel", "id": n}``;
- to the parent: ``{"ready": true}`` once the model is loaded, then for each job
  ``{"id": n, "chunk": {...}, "prompt_tokens": p, "tokens": k}`` as it answers (the tokens
  evaluated so far) and ``{"id": n, "end": {"usage": {...}, "error": null | {...}}}`` however it
  ends.

Jobs run one after another on the main thread; a reader thread takes cancels at once. The
process dies with its parent (``PR_SET_PDEATHSIG``: the kernel sends SIGKILL, which also ends a
process the parent stopped with SIGSTOP) and, should that signal be lost, at the end of its
socket.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import signal
import socket
import sys
import threading
from typing import Any

from ..errors import SovhubError
from .base import CancelToken
from .constrain import build_constraint
from .generation import Counted, chat_formatter, generate
from .toolcalls import answered_functions

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1
#: Below the hub's own threads: batch work never takes a core from the parent's request handling.
BATCH_NICE = 10


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the end of the socket still ends this process
        pass
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(0)


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, SovhubError):
        return {"class": type(exc).__name__, "message": exc.message, "param": exc.param, "code": exc.code}
    return {"class": None, "message": f"{type(exc).__name__}: {exc}", "param": None, "code": None}


class _Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.jobs: queue.SimpleQueue[tuple[int, dict[str, Any], CancelToken]] = queue.SimpleQueue()
        self._cancels: dict[int, CancelToken] = {}
        self._lock = threading.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(frame, separators=(",", ":")).encode() + b"\n")
        except OSError:  # the parent is gone
            os._exit(0)

    def read(self) -> None:
        """The reader thread: jobs queued in order, cancels applied at once; the end of the socket ends us."""
        with self.sock.makefile("rb") as stream:
            for raw in stream:
                msg = json.loads(raw)
                job = int(msg["id"])
                if msg["op"] == "generate":
                    token = CancelToken()
                    with self._lock:
                        self._cancels[job] = token
                    self.jobs.put((job, msg, token))
                elif msg["op"] == "cancel":
                    with self._lock:
                        found = self._cancels.get(job)
                    if found is not None:
                        found.cancel()
        os._exit(0)

    def done(self, job: int) -> None:
        with self._lock:
            self._cancels.pop(job, None)


def _run(llm: Any, formatter: Any, channel: _Channel, job: int, msg: dict[str, Any], cancel: CancelToken) -> None:
    messages, params = msg["messages"], msg["params"]
    counted = Counted()
    failed: Exception | None = None
    if not cancel.cancelled:

        def emit(chunk: dict[str, Any]) -> None:
            channel.send({"id": job, "chunk": chunk, "prompt_tokens": counted.prompt, "tokens": counted.completion})

        try:
            constraint = build_constraint(params, llm._model.vocab, answered_functions(messages))
            generate(llm, formatter, messages, params, constraint, cancel, emit, counted)
        except Exception as exc:  # sent to the parent, raised there as the in-process backend would
            failed = exc
    channel.send({"id": job, "end": {"usage": counted.usage(), "error": None if failed is None else _error(failed)}})
    channel.done(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sovhub.backends.batch_child")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--context", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the parent's to handle
    try:
        os.setpriority(os.PRIO_PROCESS, 0, BATCH_NICE)
    except (AttributeError, OSError):
        pass
    channel = _Channel(socket.socket(fileno=args.fd))
    from llama_cpp import Llama

    llm = Llama(model_path=args.model, n_ctx=args.context, n_threads=args.threads, verbose=False)
    formatter = chat_formatter(llm)
    threading.Thread(target=channel.read, name="batch-child-reader", daemon=True).start()
    channel.send({"ready": True, "pid": os.getpid()})
    while True:
        job, msg, cancel = channel.jobs.get()
        _run(llm, formatter, channel, job, msg, cancel)


if __name__ == "__main__":
    sys.exit(main())
