"""The egress guard: every outbound connection of the hub is checked against one allowlist.

The allowlist is derived from configuration (backend URLs, plus hosts plugins declare through
`sovhub_egress_hosts`, e.g. identity providers). A refusal raises EgressRefused before any byte
leaves the machine, is logged and emitted as the `egress.refused` event (the audit log records it).

One guard, two transports, both held by the :class:`Egress` service and open while the app
serves: ``http`` (httpx, for identity providers and other occasional calls) and ``backend``
(aiohttp, for the inference hot path, where httpx's per-request cost showed up as most of the
gateway's overhead). Both consult the same :class:`EgressGuard`; neither follows redirects on its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from yarl import URL

from .errors import BackendUnavailable, EgressRefused

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Egress", "EgressGuard", "GuardedSession", "make_backend_session", "make_guard", "make_http_client"]

log = logging.getLogger("sovhub.egress")


class EgressGuard:
    """The allowlist, and the one place a refusal is decided, logged and emitted."""

    def __init__(self, hub: Hub, allowed: set[str]) -> None:
        self.hub = hub
        self.allowed = {h.lower() for h in allowed}

    def allow(self, host: str) -> None:
        self.allowed.add(host.lower())

    def check(self, host: str | None, path: str = "") -> None:
        host = (host or "").lower()
        if host in self.allowed:
            return
        log.warning("egress refused", extra={"host": host, "url_path": path})
        self.hub.emit("egress.refused", subject=f"host:{host}", host=host, path=path)
        raise EgressRefused(
            f"outbound connection to {host!r} refused: not on the egress allowlist "
            "(configured backends and identity providers)"
        )


class _GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, guard: EgressGuard, inner: httpx.AsyncBaseTransport) -> None:
        self.guard = guard
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.guard.check(request.url.host, request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class GuardedSession:
    """An aiohttp session that asks the guard before every request."""

    def __init__(self, guard: EgressGuard, session: aiohttp.ClientSession) -> None:
        self.guard = guard
        self.session = session

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        parsed = URL(url)
        self.guard.check(parsed.host, parsed.path)
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, url, **kwargs)

    async def close(self) -> None:
        await self.session.close()


def allowed_hosts(hub: Hub, backend_urls: list[str]) -> set[str]:
    hosts = {httpx.URL(u).host for u in backend_urls if u}
    for group in hub.pm.hook.sovhub_egress_hosts(hub=hub):
        hosts.update(group or [])
    return {h for h in hosts if h}


def make_guard(hub: Hub, backend_urls: list[str]) -> EgressGuard:
    return EgressGuard(hub, allowed_hosts(hub, backend_urls))


def make_http_client(hub: Hub, guard: EgressGuard) -> httpx.AsyncClient:
    s = hub.settings
    timeout = httpx.Timeout(s.upstream_read_timeout, connect=s.upstream_connect_timeout)
    inner = httpx.AsyncHTTPTransport(retries=0)
    return httpx.AsyncClient(transport=_GuardedTransport(guard, inner), timeout=timeout, trust_env=False)


def make_backend_session(hub: Hub, guard: EgressGuard) -> GuardedSession:
    s = hub.settings
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=s.upstream_connect_timeout, sock_read=s.upstream_read_timeout
    )
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300)
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, auto_decompress=True, raise_for_status=False
    )
    return GuardedSession(guard, session)


class Egress:
    """The hub's outbound transports: opened by the app's lifespan (they need its event loop), closed after."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._http: httpx.AsyncClient | None = None
        self._backend: GuardedSession | None = None
        self._guard: EgressGuard | None = None

    def allow_backends(self, backend_urls: list[str]) -> None:
        """The allowlist from these backend URLs (and the plugins' hosts), for a catalog changed while serving:
        a removed backend's host is refused from now on, a new one's allowed."""
        if self._guard is not None:
            self._guard.allowed = {h.lower() for h in allowed_hosts(self.hub, backend_urls)}

    def open(self, backend_urls: list[str]) -> None:
        guard = self._guard = make_guard(self.hub, backend_urls)
        self._http = make_http_client(self.hub, guard)
        self._backend = make_backend_session(self.hub, guard)

    async def close(self) -> None:
        http, backend = self._http, self._backend
        self._http = self._backend = None
        if http is not None:
            await http.aclose()
        if backend is not None:
            await backend.close()

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise BackendUnavailable("the hub's HTTP client is not running (it opens with the app)")
        return self._http

    @property
    def backend(self) -> GuardedSession:
        if self._backend is None:
            raise BackendUnavailable("the hub's backend HTTP client is not running")
        return self._backend
