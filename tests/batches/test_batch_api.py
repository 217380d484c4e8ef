"""The Batch API with the openai SDK: statuses, counts, output files in OpenAI's format, validation, cancel, expiry."""

from __future__ import annotations

import json

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.hub import Hub
from sovhub.store.tables import UsageRecord
from tests.contract.schemas import assert_valid

from .conftest import chat_line, read_lines, upload, wait_for


def test_chat_batch_completes_with_openai_output_lines(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> None:
    file_id = upload(sdk, [chat_line(f"req-{i}", f"hello number {i}") for i in range(5)])
    created = sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata={"job": "nightly"})
    assert created.status == "validating" and created.metadata == {"job": "nightly"}
    assert created.expires_at == created.created_at + 24 * 3600
    batch = wait_for(sdk, created.id)
    assert batch.status == "completed", batch.errors
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (5, 5, 0)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.model == "echo" and batch.error_file_id is None
    raw = app_client.get(f"/v1/batches/{created.id}").json()
    assert_valid("Batch", raw)
    assert raw["usage"]["input_tokens"] == 15 and raw["usage"]["output_tokens"] == 15  # echo: 3 words in, 3 out
    out = read_lines(sdk, batch.output_file_id)
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(5)]  # input order
    first = out[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"]
    assert_valid("CreateChatCompletionResponse", first["response"]["body"])
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "hello number 0"
    output_file = sdk.files.retrieve(batch.output_file_id)
    assert output_file.purpose == "batch_output" and output_file.expires_at is not None
    listing = app_client.get("/v1/batches").json()
    assert_valid("ListBatchesResponse", listing)
    assert listing["data"][0]["id"] == created.id


def test_usage_rows_name_the_batch(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> None:
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, [chat_line("a", "one two")]),
                                             endpoint="/v1/chat/completions", completion_window="24h").id)
    app_client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    app_client.__exit__(None, None, None)  # shutdown flushes the usage buffer
    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord).order_by(UsageRecord.id)))
    assert [r.batch_id for r in rows] == [batch.id, None]


def test_failed_lines_go_to_the_error_file_others_succeed(sdk: openai.OpenAI) -> None:
    lines = [chat_line("ok", "fine"), chat_line("too-many", "x", n=100), chat_line("ok2", "also fine")]
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, lines), endpoint="/v1/chat/completions",
                                             completion_window="24h").id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
    errors = read_lines(sdk, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == ["too-many"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["param"] == "n"
    assert [o["custom_id"] for o in read_lines(sdk, batch.output_file_id)] == ["ok", "ok2"]


def test_validation_errors_fail_the_batch_per_line(sdk: openai.OpenAI, app_client: TestClient) -> None:
    lines = [
        json.dumps(chat_line("a", "fine")),
        "{not json",
        json.dumps(chat_line("a", "same id")),
        json.dumps({**chat_line("b", "x"), "method": "GET"}),
        json.dumps({**chat_line("c", "x"), "url": "/v1/embeddings"}),
        json.dumps(chat_line("d", "x", model="no-such-model")),
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        json.dumps(chat_line("e", "x", stream=True)),
    ]
    import io

    file_id = sdk.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch").id
    batch = wait_for(sdk, sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                             completion_window="24h").id)
    assert batch.status == "failed" and batch.failed_at
    assert batch.errors is not None and batch.errors.data is not None
    got = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert got == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_method", "method"),
        (5, "invalid_url", "url"),
        (6, "mismatched_model", "body.model"),
        (7, "missing_required_parameter", "custom_id"),
        (8, "invalid_request", "body.stream"),
    ]
    assert_valid("Batch", app_client.get(f"/v1/batches/{batch.id}").json())
    assert batch.output_file_id is None


def test_unknown_model_fails_validation(sdk: openai.OpenAI) -> None:
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, [chat_line("a", "x", model="nope")]),
                                             endpoint="/v1/chat/completions", completion_window="24h").id)
    assert batch.status == "failed" and batch.errors and batch.errors.data
    assert (batch.errors.data[0].code, batch.errors.data[0].line) == ("model_not_found", 1)


@pytest.mark.parametrize("batch_settings", [{"poll_interval_s": 0.05, "max_lines": 3}])
def test_more_lines_than_allowed_fail(sdk: openai.OpenAI) -> None:
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, [chat_line(str(i), "x") for i in range(4)]),
                                             endpoint="/v1/chat/completions", completion_window="24h").id)
    assert batch.status == "failed" and batch.errors and batch.errors.data
    assert batch.errors.data[0].code == "too_many_requests"


def test_create_refuses_bad_requests(sdk: openai.OpenAI, other_sdk: openai.OpenAI) -> None:
    import io

    file_id = upload(sdk, [chat_line("a", "x")])
    with pytest.raises(openai.BadRequestError) as info:
        sdk.batches.create(input_file_id=file_id, endpoint="/v1/images/generations", completion_window="24h")
    assert info.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError):
        sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                           completion_window="48h")  # type: ignore[arg-type]
    notes = sdk.files.create(file=("n.jsonl", io.BytesIO(b"{}")), purpose="user_data").id
    with pytest.raises(openai.BadRequestError) as info:
        sdk.batches.create(input_file_id=notes, endpoint="/v1/chat/completions", completion_window="24h")
    assert info.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                           metadata={f"k{i}": "v" for i in range(17)})
    # another organization can neither use my file nor see my batch
    with pytest.raises(openai.NotFoundError):
        other_sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    mine = sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    for call in (lambda: other_sdk.batches.retrieve(mine.id), lambda: other_sdk.batches.cancel(mine.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert [b.id for b in other_sdk.batches.list()] == []
    assert wait_for(sdk, mine.id).status == "completed"


def test_list_pages_newest_first(sdk: openai.OpenAI, app_client: TestClient) -> None:
    file_id = upload(sdk, [chat_line("a", "x")])
    ids = [sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id
           for _ in range(3)]
    page = app_client.get("/v1/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = app_client.get("/v1/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert [b.id for b in sdk.batches.list()] == ids[::-1]


@pytest.mark.parametrize("batch_settings", [{"poll_interval_s": 0.05, "max_capacity_share": 0.05}])
def test_cancel_keeps_partial_results(sdk: openai.OpenAI) -> None:
    lines = [chat_line(f"r{i}", "one two three", model="echo") for i in range(40)]
    created = sdk.batches.create(input_file_id=upload(sdk, lines), endpoint="/v1/chat/completions",
                                 completion_window="24h")
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # some lines done, most not
        counts = sdk.batches.retrieve(created.id).request_counts
        if counts is not None and counts.completed >= 1:
            break
        time.sleep(0.02)
    cancelling = sdk.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = wait_for(sdk, created.id)
    assert batch.status == "cancelled" and batch.cancelling_at and batch.cancelled_at
    done = read_lines(sdk, batch.output_file_id)
    cancelled = read_lines(sdk, batch.error_file_id)
    assert len(done) + len(cancelled) == 40
    assert {c["error"]["code"] for c in cancelled} <= {"batch_cancelled"}
    assert len({x["custom_id"] for x in done + cancelled}) == 40  # each once
    assert 0 < len(done) < 40  # cancelled part-way, what ran is kept
    assert sdk.batches.cancel(created.id).status == "cancelled"  # cancelling again changes nothing


def test_a_finished_batch_cannot_be_cancelled(sdk: openai.OpenAI) -> None:
    finished = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, [chat_line("z", "x")]),
                                                endpoint="/v1/chat/completions", completion_window="24h").id)
    assert finished.status == "completed"
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(finished.id)


def test_embeddings_batch(sdk: openai.OpenAI) -> None:
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "multilingual-e5-small", "input": f"text {i}"}} for i in range(3)]
    batch = wait_for(sdk, sdk.batches.create(input_file_id=upload(sdk, lines), endpoint="/v1/embeddings",
                                             completion_window="24h").id, timeout=120)
    assert batch.status == "completed", batch.errors
    out = read_lines(sdk, batch.output_file_id)
    assert len(out[0]["response"]["body"]["data"][0]["embedding"]) == 384
    assert_valid("CreateEmbeddingResponse", out[0]["response"]["body"])


@pytest.mark.parametrize("batch_settings", [{"poll_interval_s": 0.05, "window_s": 1.5, "max_capacity_share": 0.05}])
def test_the_window_ends_the_rest_expires_results_kept(sdk: openai.OpenAI) -> None:
    created = sdk.batches.create(input_file_id=upload(sdk, [chat_line(f"r{i}", "a b c") for i in range(40)]),
                                 endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_for(sdk, created.id)
    assert batch.status == "expired" and batch.expired_at
    done, rest = read_lines(sdk, batch.output_file_id), read_lines(sdk, batch.error_file_id)
    assert done and rest and len(done) + len(rest) == 40
    assert {r["error"]["code"] for r in rest} == {"batch_expired"} and all(r["response"] is None for r in rest)
    assert len({x["custom_id"] for x in done + rest}) == 40
