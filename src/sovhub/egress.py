"""The egress guard: the one outbound HTTP client of the hub, refusing hosts not on the allowlist.

The allowlist is derived from configuration (backend URLs, plus hosts plugins declare through
`sovhub_egress_hosts`, e.g. identity providers). A refusal raises EgressRefused before any byte
leaves the machine, is logged and emitted as the `egress.refused` event (the audit log records it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from .errors import EgressRefused

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["EgressGuard", "make_http_client"]

log = logging.getLogger("sovhub.egress")


class EgressGuard(httpx.AsyncBaseTransport):
    def __init__(self, hub: Hub, inner: httpx.AsyncBaseTransport, allowed: set[str]) -> None:
        self.hub = hub
        self.inner = inner
        self.allowed = {h.lower() for h in allowed}

    def allow(self, host: str) -> None:
        self.allowed.add(host.lower())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = (request.url.host or "").lower()
        if host not in self.allowed:
            log.warning("egress refused", extra={"host": host, "url_path": request.url.path})
            self.hub.emit("egress.refused", subject=f"host:{host}", host=host, path=request.url.path)
            raise EgressRefused(
                f"outbound connection to {host!r} refused: not on the egress allowlist "
                "(configured backends and identity providers)"
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def allowed_hosts(hub: Hub, backend_urls: list[str]) -> set[str]:
    hosts = {httpx.URL(u).host for u in backend_urls if u}
    for group in hub.pm.hook.sovhub_egress_hosts(hub=hub):
        hosts.update(group or [])
    return {h for h in hosts if h}


def make_http_client(hub: Hub, backend_urls: list[str]) -> httpx.AsyncClient:
    s = hub.settings
    timeout = httpx.Timeout(s.upstream_read_timeout, connect=s.upstream_connect_timeout)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    inner = httpx.AsyncHTTPTransport(limits=limits, retries=0)
    guard = EgressGuard(hub, inner, allowed_hosts(hub, backend_urls))
    return httpx.AsyncClient(transport=guard, timeout=timeout, trust_env=False)
