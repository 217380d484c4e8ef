"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs latency).

- request id: taken from `x-request-id` when sane, else made; set on the response and in logs;
- body limit: 413 before the handler reads a byte too many;
- timing: `x-sovhub-overhead-ms` on /v1 responses is the time spent in the hub before the
  response started, minus the time spent waiting for backends (handlers add it to
  `scope["state"]["backend_s"]`); the full overhead and latency go to /metrics.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sovhub import linear_re

from ..errors import PayloadTooLarge, SovhubError
from ..observability import Metrics, new_request_id, request_id_var

__all__ = ["HubMiddleware"]

log = logging.getLogger("sovhub.api")
# Sent only when the hub's public URL is https: a browser that saw it never falls back to plain
# HTTP for a year, so a network attacker cannot strip TLS to read the session cookie.
_HSTS = b"max-age=31536000; includeSubDomains"
_RID = linear_re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class HubMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body: int, hsts: bool = False,
                 body_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.hsts = hsts
        self.metrics = metrics
        self.max_body = max_body
        # Upload routes (exact paths) with their own, larger limit; their handlers stream the body.
        self.body_limits = body_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        token = request_id_var.set(rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["backend_s"] = 0.0
        path: str = scope["path"]
        is_api = path.startswith("/v1/") or path.startswith("/hub/v1/")
        status_holder = [500]
        response_started = [False]

        max_body = self.body_limits.get(path, self.max_body) if scope["method"] == "POST" else self.max_body
        length = _content_length(scope)
        if length is not None and length > max_body:
            await _send_error(send, _too_large(max_body), rid)
            request_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise _BodyTooLarge()
            return message

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                if self.hsts:
                    headers.append((b"strict-transport-security", _HSTS))
                if is_api:
                    overhead = time.perf_counter() - started - state["backend_s"]
                    headers.append((b"x-sovhub-overhead-ms", f"{max(0.0, overhead) * 1000:.3f}".encode()))
                message["headers"] = headers
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, limited_receive, timed_send)
        except _BodyTooLarge:
            if not response_started[0]:
                await _send_error(send, _too_large(max_body), rid)
            status_holder[0] = 413
        except Exception:
            # The one place an unexpected error ends: logged with its trace, answered without it.
            log.exception("unhandled error", extra={"path": path})
            if not response_started[0]:
                await _send_error(send, SovhubError(f"internal error; quote request id {rid} when reporting it"), rid)
            status_holder[0] = 500
        finally:
            self.metrics.in_flight.dec()
            route = _route_label(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(scope["method"], route, str(status_holder[0])).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if is_api:
                self.metrics.overhead.labels(route).observe(max(0.0, elapsed - state["backend_s"]))
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than the limit of {limit} bytes")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _RID.match(candidate):
                return candidate
    return new_request_id()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_label(scope: Scope) -> str:
    route: Any = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


async def _send_error(send: Send, exc: SovhubError, rid: str) -> None:
    body = json.dumps(exc.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
