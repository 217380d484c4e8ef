"""Counting a response's input tokens is free by design: no price needed, nothing reserved or posted, an
organization out of credits still counts; it stays under the key's request limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sovhub.access.quotas import set_org_limits
from sovhub.accounts import get_org
from sovhub.credits.tables import CreditTransfer

from .test_enforcement import _auth, _chat, _client, _grant, settle_all
from .test_enforcement import setup as setup  # noqa: F401 - the fixture, shared


@pytest.fixture
def client(hub, setup: dict[str, Any]) -> Iterator[TestClient]:
    yield from _client(hub)


def _count(client: TestClient, secret: str, model: str = "echo") -> Any:
    return client.post("/v1/responses/input_tokens", headers=_auth(secret),
                       json={"model": model, "input": "count these words"})


def _transfers(hub) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(CreditTransfer).where(
            CreditTransfer.code == "usage")) or 0)


def test_counting_input_tokens_costs_nothing_and_needs_no_price(hub, client, setup) -> None:
    _grant(hub, "0.000001")  # acme pays with credits from now on, and holds almost nothing
    counted = _count(client, setup["acme"])
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0, counted.text
    assert "x-sovhub-credits-remaining" not in counted.headers  # credits never looked at it
    # "other" has no price: a chat with it is refused for an organization paying with credits; counting is not.
    refused = _chat(client, setup["acme"], model="other")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_priced"
    assert _count(client, setup["acme"], model="other").status_code == 200
    # Out of credits: a chat is refused, counting still answers.
    assert _chat(client, setup["acme"], max_tokens=50).status_code == 429
    assert _count(client, setup["acme"]).status_code == 200
    settle_all(client, hub)
    assert _transfers(hub) == 0  # no reservation, no post, no void: nothing in the ledger


def test_counting_is_still_under_the_keys_request_limits(hub, client, setup) -> None:
    _grant(hub, "1")
    set_org_limits(hub, get_org(hub, "acme").id, {"rpm": 1})
    assert _count(client, setup["acme"]).status_code == 200
    limited = _count(client, setup["acme"])
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
