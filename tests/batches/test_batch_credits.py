"""Batch lines pay with credits at the batch discount: reserved and posted discounted, traced to the batch."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.credits.amounts import MICRO
from sovhub.credits.control import Credits
from sovhub.credits.ledger import Ledger
from sovhub.credits.prices import set_price
from sovhub.credits.programmes import ProgrammeRules, create_programme, grant_credits
from sovhub.credits.tables import CreditTransfer
from sovhub.hub import Hub

from .conftest import chat_line, read_lines, upload, wait_for


@pytest.fixture
def settings(data_dir: Any, batch_settings: dict[str, Any]) -> Any:
    from tests.conftest import make_settings

    return make_settings(data_dir, safety={"enabled": False}, batch=batch_settings,
                         credits={"batch_discount_percent": 40})


def _settle(client: TestClient, hub: Hub) -> None:
    credits = hub.services.get(Credits)

    async def run() -> None:
        await credits.flush_settlements()
        await credits.writer.drain()

    client.portal.call(run)  # type: ignore[union-attr]


def test_batch_lines_are_charged_at_the_discount_and_interactive_requests_at_the_full_price(
    sdk: openai.OpenAI, app_client: TestClient, hub: Hub
) -> None:
    create_programme(hub, "Compute", 100 * MICRO, [("Fund", 10_000)], ProgrammeRules(), actor="tests")
    # 1000 micro-credits per input token, 3000 per output token.
    set_price(hub, "echo", input_per_1m=1000 * MICRO, output_per_1m=3000 * MICRO, actor="tests")
    grant = grant_credits(hub, "Compute", "acme", 90 * MICRO, reason="pilot", actor="tests")
    interactive = app_client.post("/v1/chat/completions", headers={"x-request-id": "req-live"}, json={
        "model": "echo", "messages": [{"role": "user", "content": "one two three"}]})
    assert interactive.status_code == 200, interactive.text
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, [chat_line("a", "one two three"),
                                                                        chat_line("b", "four five six")]),
                                             endpoint="/v1/chat/completions", completion_window="24h").id)
    assert batch.status == "completed", batch.errors
    _settle(app_client, hub)
    with hub.db.session() as s:
        posts = s.scalars(select(CreditTransfer).where(CreditTransfer.kind == "post",
                                                       CreditTransfer.code == "usage")).all()
    # The request ids the batch's output lines name (usage rows reach the database later, in batches).
    batch_rows = [line["response"]["request_id"] for line in read_lines(sdk, batch.output_file_id)]
    by_request = {p.request_id: p for p in posts}
    assert set(by_request) == {"req-live", *batch_rows} and len(batch_rows) == 2
    # echo: 3 tokens in, 3 out: 3 x 1000 + 3 x 3000 = 12,000 in full; 40% off: 7,200.
    assert by_request["req-live"].amount == 12_000 and "batch" not in by_request["req-live"].details
    for request_id in batch_rows:
        post = by_request[request_id]
        assert post.amount == 7_200
        assert post.details["batch"] == batch.id and post.details["discount_percent"] == 40
    ledger = hub.services.get(Ledger)
    account = ledger.account_id("grant", grant.id)
    assert account is not None
    assert ledger.balances([account])[account].debits_posted == 12_000 + 2 * 7_200
    assert ledger.verify() == []
    statement = app_client.get("/hub/v1/organization/statements").json()
    assert {line["batch"] for line in statement["lines"] if line["kind"] == "usage"} == {None, batch.id}
