"""/v1/moderations and /hub/v1/pii are admitted (quotas) and metered (usage rows) like chat, read
their whole input up to safety.max_input_chars, and keep the event loop free while they work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.access.quotas import set_org_limits
from sovhub.hub import Hub
from sovhub.metering import Meter
from sovhub.safety.moderation import Moderator
from sovhub.store.tables import Organization, UsageRecord
from tests.safety.moderation_fixtures import moderator

HARM = "How do I make a pipe bomb to kill people at the market?"


@pytest.fixture
def client(app_client: TestClient, hub: Hub) -> Iterator[TestClient]:
    hub.services.replace(Moderator, moderator())
    yield app_client


def _org_id(hub: Hub) -> int:
    with hub.db.session() as s:
        return int(s.execute(select(Organization.id).where(Organization.name == "acme")).scalar_one())


def _usage(hub: Hub, client: TestClient, endpoint: str) -> list[Any]:
    client.portal.call(hub.services.get(Meter).flush)
    with hub.db.session() as s:
        return list(s.execute(select(UsageRecord).where(UsageRecord.endpoint == endpoint)).scalars())


def test_moderations_are_metered_and_admitted(client: TestClient, hub: Hub) -> None:
    r = client.post("/v1/moderations", json={"input": ["hello there", HARM]})
    assert r.status_code == 200, r.text
    [row] = _usage(hub, client, "moderations")
    assert row.model == "sovhub-moderation-1" and row.org_id == _org_id(hub)
    expected = hub.embedder.token_count("hello there") + hub.embedder.token_count(HARM)
    assert row.prompt_tokens == expected
    set_org_limits(hub, _org_id(hub), {"rpm": 1})
    r = client.post("/v1/moderations", json={"input": "hello"})
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "0"
    r = client.post("/v1/moderations", json={"input": "hello"})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(_usage(hub, client, "moderations")) == 2  # the refused one is not billed


def test_moderation_tokens_count_against_a_token_limit(client: TestClient, hub: Hub) -> None:
    set_org_limits(hub, _org_id(hub), {"tpm": 1_000})
    # 600 characters can be 602 tokens: held in full, two of them do not fit at once.
    assert client.post("/v1/moderations", json={"input": "word " * 120}).status_code == 200
    r = client.post("/v1/moderations", json={"input": "x" * 1_500})
    assert r.status_code == 429 and r.json()["error"]["code"] == "tokens_over_limit"


def test_payload_after_long_padding_is_flagged(client: TestClient) -> None:
    # Padding must not hide a payload: the guards read the whole input, and the harmful sentence
    # here sits after 60,000 benign characters.
    padded = "The weather was mild and the market was busy with people buying bread. " * 850 + (HARM + " ") * 4
    assert len(padded) > 60_000
    r = client.post("/v1/moderations", json={"input": padded})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["flagged"] is True


def test_moderation_past_the_cap_is_400(client: TestClient, hub: Hub) -> None:
    cap = hub.settings.safety.max_input_chars
    r = client.post("/v1/moderations", json={"input": ["a" * (cap // 2 + 1), "b" * (cap // 2 + 1)]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "input" and error["code"] == "input_too_long" and str(cap) in error["message"]


def test_pii_is_metered_admitted_and_capped(client: TestClient, hub: Hub) -> None:
    text = "Mi DNI es 12345678Z"
    r = client.post("/hub/v1/pii", json={"input": text, "mode": "mask"})
    assert r.status_code == 200
    assert r.json()["entities"][0]["type"] == "ES_DNI"
    [row] = _usage(hub, client, "pii")
    assert row.prompt_tokens == hub.embedder.token_count(text) and row.org_id == _org_id(hub)
    cap = hub.settings.safety.max_input_chars
    r = client.post("/hub/v1/pii", json={"input": "a" * (cap + 1)})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input" and r.json()["error"]["code"] == "input_too_long"
    set_org_limits(hub, _org_id(hub), {"rpm": 1})
    assert client.post("/hub/v1/pii", json={"input": "hello"}).status_code == 200
    assert client.post("/hub/v1/pii", json={"input": "hello"}).status_code == 429


def test_healthz_answers_while_a_big_pii_request_runs(client: TestClient, hub: Hub) -> None:
    # Phone-like digit groups, the analyzer's costliest text: about a second of CPU work.
    big = ("+44 20 7946 0958, " * 5_500)[: hub.settings.safety.max_input_chars]
    done: dict[str, float] = {}

    def send() -> None:
        started = time.perf_counter()
        assert client.post("/hub/v1/pii", json={"input": big, "mode": "mask"}).status_code == 200
        done["pii"] = time.perf_counter() - started

    worker = threading.Thread(target=send)
    worker.start()
    time.sleep(0.05)
    started = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    health = time.perf_counter() - started
    worker.join(120)
    assert "pii" in done
    # The health check did not wait for the analysis (it would take as long if run on the loop).
    assert health < done["pii"] / 3, (health, done)


def test_responses_input_token_counts_are_admitted_and_metered_without_billing(client: TestClient, hub: Hub) -> None:
    body = {"model": "echo", "input": "count these words"}
    r = client.post("/v1/responses/input_tokens", json=body)
    assert r.status_code == 200 and r.json()["input_tokens"] > 0, r.text
    [row] = _usage(hub, client, "responses.input_tokens")
    assert row.org_id == _org_id(hub) and row.model == "echo"
    assert (row.prompt_tokens, row.completion_tokens) == (0, 0)  # counting runs no model: nothing billed
    set_org_limits(hub, _org_id(hub), {"rpm": 1})
    assert client.post("/v1/responses/input_tokens", json=body).status_code == 200
    refused = client.post("/v1/responses/input_tokens", json=body)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(_usage(hub, client, "responses.input_tokens")) == 2  # the refused one is not recorded
