"""`/metrics` on its own address (``metrics_port``, ``metrics_host``), apart from the public app.

With ``metrics_port`` set, the main app does not route ``/metrics`` at all (a probe of the public
port finds nothing), and this listener serves it, still behind the metrics token, from a thread
of its own: a scrape is answered while the event loop is busy, and never waits behind requests.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import ConfigError

__all__ = ["MetricsListener", "metrics_token_ok"]

_UNAUTHORIZED = ("/metrics needs the metrics token: Authorization: Bearer <metrics_token> "
                 "(<data_dir>/metrics_token or the metrics_token setting)")


def metrics_token_ok(header: str, expected: str) -> bool:
    """Whether an Authorization header carries the metrics token (constant-time comparison)."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class MetricsListener:
    """A small WSGI server answering ``GET /metrics`` (token checked) and 404 for everything else."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, token: Callable[[], str]) -> None:
        self.registry = registry
        self.token = token
        try:
            self.server = make_server(host, port, self._app, server_class=_Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"metrics_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.thread = threading.Thread(target=self.server.serve_forever, name="sovhub-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, "404 Not Found", "Not Found", "not_found", "invalid_request_error")
        if not metrics_token_ok(str(environ.get("HTTP_AUTHORIZATION", "")), self.token()):
            return _json(start_response, "401 Unauthorized", _UNAUTHORIZED, "invalid_metrics_token",
                         "authentication_error", [("WWW-Authenticate", 'Bearer realm="metrics"')])
        body = generate_latest(self.registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]


def _json(
    start_response: Callable[..., Any], status: str, message: str, code: str, kind: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]
