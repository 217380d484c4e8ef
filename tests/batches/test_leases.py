"""A replica that dies mid-line loses only its lease: another replica runs the line, and its custom_id is in the
output once, even if the dead one's late result arrives."""

from __future__ import annotations

from datetime import timedelta

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from sovhub.batches.runner import BatchRunner
from sovhub.batches.store import BatchStore
from sovhub.batches.tables import BatchLine
from sovhub.hub import Hub
from sovhub.store.base import utcnow

from .conftest import chat_line, read_lines, upload


@pytest.mark.parametrize("batch_settings", [{"enabled": False, "lease_s": 30.0}])
def test_expired_lease_is_taken_over_and_the_late_result_dropped(
    sdk: openai.OpenAI, app_client: TestClient, hub: Hub
) -> None:
    store, runner = hub.services.get(BatchStore), hub.services.get(BatchRunner)
    created = sdk.batches.create(input_file_id=upload(sdk, [chat_line(f"c{i}", "hi there") for i in range(3)]),
                                 endpoint="/v1/chat/completions", completion_window="24h")
    row = store.claim_validation("replica-a")
    assert row is not None and store.claim_validation("replica-b") is None  # one validator at a time
    app_client.portal.call(runner._validate, row)  # type: ignore[union-attr]
    dead = store.claim_lines("replica-a", 3)
    assert len(dead) == 3 and store.claim_lines("replica-b", 3) == []  # held: nobody else takes them
    with hub.db.session() as s:  # replica-a died; its leases ran out
        s.execute(update(BatchLine).values(lease_until=utcnow() - timedelta(seconds=1)))
    app_client.portal.call(runner.step)  # type: ignore[union-attr]
    assert store.finish_line(dead[0], "replica-a", status="succeeded", result={"late": True}) is False
    for _ in range(5):  # one line per step (concurrency 1), then the finalization
        app_client.portal.call(runner.step)  # type: ignore[union-attr]
    batch = sdk.batches.retrieve(created.id)
    assert batch.status == "completed"
    out = read_lines(sdk, batch.output_file_id)
    assert sorted(o["custom_id"] for o in out) == ["c0", "c1", "c2"]
    assert not any(o.get("late") for o in out)


@pytest.mark.parametrize("batch_settings", [{"enabled": False}])
def test_graceful_shutdown_gives_lines_back(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> None:
    store = hub.services.get(BatchStore)
    sdk.batches.create(input_file_id=upload(sdk, [chat_line("x", "hi")]), endpoint="/v1/chat/completions",
                       completion_window="24h")
    row = store.claim_validation("me")
    assert row is not None
    app_client.portal.call(hub.services.get(BatchRunner)._validate, row)  # type: ignore[union-attr]
    assert len(store.claim_lines("me", 1)) == 1
    assert store.release("me") == 1
    assert len(store.claim_lines("next", 1)) == 1  # at once, no lease to wait out
