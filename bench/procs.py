"""Process plumbing shared by the benchmarks: start the mock, sovhub and LiteLLM; read /proc.

Everything binds 127.0.0.1. Processes are started in their own session and stopped by pid
(SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH",
    "REPO",
    "Proc",
    "cpu_seconds",
    "free_port",
    "machine_info",
    "mock_stats",
    "pin_running",
    "pinned",
    "post_chat",
    "rss_bytes",
    "start_litellm",
    "start_mock",
    "start_sovhub",
    "write_result",
]

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
SOVHUB = str(Path(PYTHON).with_name("sovhub"))
_CLK_TCK = os.sysconf("SC_CLK_TCK")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: Sequence[str], cpus: str | None) -> list[str]:
    """Prefix `taskset -c CPUS` when pinning is asked for (None: let the scheduler place it)."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace: float = 20.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _spawn(name: str, cmd: list[str], port: int, workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(
        cmd, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        start_new_session=True, cwd=workdir,
    )
    return Proc(name, popen, log, port)


def post_chat(port: int, key: str | None, *, model: str = "mock-model", timeout: float = 5.0) -> int:
    """One small chat completion; the HTTP status (0 when nothing answered)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, method="POST")
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def mock_stats(port: int) -> dict[str, int]:
    """The mock's counters (connections accepted, requests answered)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/mock/stats", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _wait_ready(proc: Proc, timeout: float, model: str = "mock-model") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if post_chat(proc.port, proc.key, model=model, timeout=30.0) == 200:
            return
        time.sleep(0.5)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s:\n{proc.tail()}")


def start_mock(workdir: Path, cpus: str | None = None) -> Proc:
    port = free_port()
    proc = _spawn("mock", pinned([PYTHON, str(BENCH / "mock_upstream.py"), "--port", str(port)], cpus), port, workdir)
    _wait_ready(proc, 15)
    return proc


def _sovhub(data_dir: Path, *args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [SOVHUB, "--data-dir", str(data_dir), *args], capture_output=True, text=True, env={**os.environ, **env},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"sovhub {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def pin_running(pid: int, cpus: str | None) -> None:
    """Move a running process tree, all threads, onto CPUS (start-up ran on every core)."""
    if not cpus:
        return
    for p in _tree(pid):
        subprocess.run(["taskset", "-a", "-c", "-p", cpus, str(p)], capture_output=True, check=False)


def start_sovhub(
    workdir: Path, *, mock_port: int | None, cpus: str | None = None, embedded: bool = False,
    env: dict[str, str] | None = None, ready_timeout: float = 900.0, name: str = "sovhub",
) -> Proc:
    """`sovhub serve` on a fresh data dir, with an org `bench` and an API key (metering on: the default)."""
    data_dir = Path(tempfile.mkdtemp(prefix="sovhub-data-", dir=workdir))
    full_env = {"SOVHUB_EMBEDDED_ENABLED": "true" if embedded else "false", **(env or {})}
    if mock_port is not None:
        _sovhub(data_dir, "backends", "add", "mock", "--url", f"http://127.0.0.1:{mock_port}/v1",
                "--model", "mock-model", env=full_env)
    _sovhub(data_dir, "orgs", "create", "bench", env=full_env)
    key = _sovhub(data_dir, "keys", "create", "--org", "bench", env=full_env).strip().splitlines()[-1].strip()
    port = free_port()
    cmd = [SOVHUB, "--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = _spawn(name, cmd, port, workdir, full_env)
    proc.key = key
    proc.extra["data_dir"] = str(data_dir)
    model = "mock-model" if mock_port is not None else full_env.get("SOVHUB_EMBEDDED_MODEL_ID", "smollm2-135m-instruct")
    t0 = time.monotonic()
    _wait_ready(proc, ready_timeout, model=model)
    proc.extra["startup_s"] = round(time.monotonic() - t0, 1)
    pin_running(proc.pid, cpus)
    return proc


def start_litellm(workdir: Path, venv: Path, mock_port: int, cpus: str | None = None) -> Proc:
    """LiteLLM's proxy routing `mock-model` to the mock, with a master key (see docs/benchmarks.md)."""
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: mock-model\n"
        "    litellm_params:\n"
        "      model: openai/mock-model\n"
        f"      api_base: http://127.0.0.1:{mock_port}/v1\n"
        "      api_key: mock\n"
        "general_settings:\n"
        "  master_key: sk-bench-master\n",
        encoding="utf-8",
    )
    port = free_port()
    cmd = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    # No telemetry, nothing fetched at start: the model cost map is read from the package.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    proc = _spawn("litellm", cmd, port, workdir, env)
    proc.key = "sk-bench-master"
    _wait_ready(proc, 180)
    pin_running(proc.pid, cpus)
    return proc


def _tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += _tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its descendants (all threads), from /proc."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its descendants (VmRSS, summed)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True,
                                    text=True, check=False).stdout.strip())
    except OSError:
        rev, dirty = "unknown", False
    load1 = os.getloadavg()[0]
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "sovhub_commit": rev + ("+dirty-src" if dirty else ""),
        "loadavg_1m_at_start": round(load1, 2), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    if isinstance(data.get("machine"), dict):  # the load at the end too: a shared machine's load moves
        data["machine"].setdefault("loadavg_1m_at_end", round(os.getloadavg()[0], 2))
    out = BENCH / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return out
