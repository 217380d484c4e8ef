"""The address a request really came from, believing X-Forwarded-For only from proxies you run.

``access.trusted_proxies`` lists the reverse proxies (addresses or CIDR networks) in front of the
hub. When the connecting peer is one of them, the hub reads X-Forwarded-For from the right and
skips every hop that is itself a trusted proxy; the first other hop is the client. A header sent
by anyone else is ignored, so a client cannot choose the address it is throttled under. With no
proxy configured the peer's own address is used (behind an unconfigured proxy every client then
shares the proxy's address: see docs/security.md, sign-in throttle).

Usage::

    ip = client_address(request)   # "203.0.113.7"
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import HTTPConnection

__all__ = ["client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """`entries` as networks; a bare address is a /32 (or /128). ValueError names a bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"access.trusted_proxies: {entry!r} is not an IP address or network") from exc
    return tuple(out)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def client_address(conn: HTTPConnection) -> str:
    """The client's address: the peer, or the nearest untrusted hop when the peer is a trusted proxy."""
    peer = conn.client.host if conn.client else "unknown"
    networks = parse_networks(tuple(conn.app.state.hub.settings.access.trusted_proxies))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for v in conn.headers.getlist("x-forwarded-for") for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    # Every hop is one of ours: the left-most is as close to the client as anyone saw.
    return hops[0] if hops else peer
