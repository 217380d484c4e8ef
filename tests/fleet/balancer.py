"""A real load balancer in front of the replicas: Debian's HAProxy, started by the test on a free loopback port.

It routes only to replicas whose ``GET /readyz`` answers 200 (checked every ``check_ms``, out after ``fall``
failures, back after ``rise`` successes, a check answered within ``check_timeout_s``), as a Kubernetes
Service follows readiness (whose probes time out after 1 s by default). It never retries a
request on another replica (``retries 0``, no redispatch): a request sent to a replica that is going away
fails in front of the test instead of being hidden by the balancer. ``maxconn``: at most that many requests at
once per replica, the rest queued in HAProxy, as production balancers bound what each backend is given. Its counters come from the stats socket.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import need_service
from tests.server import free_port

__all__ = ["HAProxy"]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class HAProxy:
    def __init__(self, workdir: Path, ports: list[int], *, check_ms: int = 250, fall: int = 2, rise: int = 1,
                 check_timeout_s: float = 2.0, balance: str = "roundrobin", maxconn: int = 0) -> None:
        if not Path(HAPROXY).exists():
            need_service("haproxy not installed (Debian package `haproxy`: make system-deps)")
        self.port = free_port()
        self.workdir = workdir
        self.socket_path = workdir / f"haproxy-{self.port}.sock"
        self.config = workdir / f"haproxy-{self.port}.cfg"
        limit = f" maxconn {maxconn}" if maxconn else ""
        servers = "\n".join(f"    server r{i} 127.0.0.1:{port} check inter {check_ms}ms fall {fall} rise {rise}{limit}"
                            for i, port in enumerate(ports))
        self.config.write_text(f"""global
    maxconn 4096
    stats socket {self.socket_path} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    retries 0
    # A busy replica's /readyz may take longer than the check interval (it pings the database); a draining
    # one answers 503 at once, without the database, so the short interval still takes it out quickly.
    timeout check {int(check_timeout_s * 1000)}ms
    # With maxconn, requests beyond it wait in HAProxy's queue (not in a replica's event loop, ahead of its checks).
    timeout queue 30s
frontend hub
    bind 127.0.0.1:{self.port}
    default_backend replicas
backend replicas
    balance {balance}
    option httpchk GET /readyz
    http-check expect status 200
{servers}
""", encoding="utf-8")
        self.log_path = workdir / f"haproxy-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen: {self.log_path.read_text(errors='replace')}")

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's `show stat` for each server of the backend (status, stot, hrsp_2xx, wretr, wredis...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == "replicas" and r["svname"] not in ("BACKEND",)}

    def wait_status(self, server: str, status: str, timeout: float = 60) -> float:
        """Seconds until `server` (r0, r1...) is `status` (UP, DOWN) in the balancer's eyes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.stats()[server]["status"].startswith(status):
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{server} not {status} after {timeout} s: {self.stats()[server]['status']}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
