"""Start `sovhub serve` as a real subprocess (as vLLM's tests start their server) and wait until ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SOVHUB = [sys.executable, "-m", "sovhub"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(data_dir: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SOVHUB, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, input=input, timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"sovhub {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class RemoteHub:
    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, port: int | None = None,
                 timeout: float = 600.0, command: str = "serve") -> None:
        """`command`: `serve`, or `batch-worker` (which answers /readyz too)."""
        self.data_dir = data_dir
        self.command = command
        self.port = port or free_port()
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.log_path = data_dir.parent / f"serve-{self.port}.log"
        self.timeout = timeout
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RemoteHub:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*SOVHUB, "--data-dir", str(self.data_dir), self.command, "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sovhub {self.command} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"sovhub {self.command} not ready in {self.timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int | None = None) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig is None:
                self.proc.terminate()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> RemoteHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedServer:
    """An app served by uvicorn in a thread on a free loopback port (in-process plugins stay visible)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="error", lifespan="on"))
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("in-thread server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
