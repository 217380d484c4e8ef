"""The client address behind trusted proxies, and X-Forwarded-For ignored from anyone else."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from sovhub.access.addresses import client_address, parse_networks


def _request(peer: str, forwarded: list[str], trusted: list[str]) -> Request:
    hub = SimpleNamespace(settings=SimpleNamespace(access=SimpleNamespace(trusted_proxies=trusted)))
    app: Any = SimpleNamespace(state=SimpleNamespace(hub=hub))
    headers = [(b"x-forwarded-for", v.encode()) for v in forwarded]
    return Request({"type": "http", "client": (peer, 1), "headers": headers, "app": app})


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("203.0.113.5", ["1.2.3.4"], [], "203.0.113.5"),                        # no proxy configured: header ignored
    ("203.0.113.5", ["1.2.3.4"], ["10.0.0.0/8"], "203.0.113.5"),            # not from our proxy: ignored
    ("10.0.0.2", ["198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),
    ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),   # the client's own entry is left
    ("10.0.0.2", ["6.6.6.6, 198.51.100.7, 10.0.0.9"], ["10.0.0.0/8"], "198.51.100.7"),  # two proxies of ours
    ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),  # header repeated
    ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),
    ("::1", ["2001:db8::7"], ["::1"], "2001:db8::7"),
    ("10.0.0.2", ["not-an-ip"], ["10.0.0.0/8"], "not-an-ip"),  # a junk hop is not one of ours: it is the client
])
def test_client_address(peer: str, forwarded: list[str], trusted: list[str], expected: str) -> None:
    assert client_address(_request(peer, forwarded, trusted)) == expected


def test_a_bad_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks(("10.0.0.300",))
