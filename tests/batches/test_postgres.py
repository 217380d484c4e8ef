"""The batch and file paths on PostgreSQL: leases by conditional UPDATE, chunks as bytea, the whole API."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from sovhub.batches.store import BatchStore
from sovhub.hub import Hub
from sovhub.settings import Settings
from tests.conftest import make_settings

from .conftest import chat_line, read_lines, upload, wait_for


@pytest.fixture
def settings(data_dir: Path, postgres_database_url: str) -> Settings:
    # PostgreSQL only: the SQLite variant is every other test in this directory.
    return make_settings(data_dir, database_url=postgres_database_url, safety={"enabled": False},
                         batch={"poll_interval_s": 0.05})


def test_batch_and_files_on_postgresql(sdk: openai.OpenAI, hub: Hub) -> None:
    import io

    big = b"0123456789" * 300_000
    f = sdk.files.create(file=("big.bin", io.BytesIO(big)), purpose="user_data")
    assert sdk.files.content(f.id).content == big
    created = sdk.batches.create(input_file_id=upload(sdk, [chat_line(f"p{i}", "hello pg") for i in range(4)]),
                                 endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_for(sdk, created.id)
    assert batch.status == "completed"
    assert [o["custom_id"] for o in read_lines(sdk, batch.output_file_id)] == [f"p{i}" for i in range(4)]
    store = hub.services.get(BatchStore)
    # nothing left to claim; a second claimant gets nothing either
    assert store.claim_lines("a", 4) == [] and store.claim_finalization("a") is None
