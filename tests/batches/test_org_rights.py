"""An organization's export holds its files (content), batches (each line's request and result, the output and
error files) and usage; its erasure removes them, over the web API (admin key) and the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sovhub.accounts import ADMIN, INFERENCE, create_key
from sovhub.batches.tables import BatchLine, BatchRow
from sovhub.files.tables import FileChunk, StoredFile
from sovhub.hub import Hub
from sovhub.metering import Meter
from sovhub.store.tables import Organization, UsageRecord
from tests.conftest import run_cli

from .conftest import chat_line, upload, wait_for


def _done_batch(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> Any:
    lines = [chat_line("ok", "secret plans for tuesday"), chat_line("bad", "x", n=100)]
    created = sdk.batches.create(input_file_id=upload(sdk, lines), endpoint="/v1/chat/completions",
                                 completion_window="24h")
    batch = wait_for(sdk, created.id)
    assert batch.status == "completed" and batch.output_file_id and batch.error_file_id
    app_client.portal.call(hub.services.get(Meter).flush)  # type: ignore[union-attr]
    return batch


def _count(hub: Hub, table: Any, *where: Any) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _acme(hub: Hub) -> int:
    with hub.db.session() as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == "acme"))
    assert org_id is not None
    return int(org_id)


def _check_export(data: dict[str, Any], batch: Any) -> None:
    files = {f["id"]: f for f in data["files"]}
    assert set(files) == {batch.input_file_id, batch.output_file_id, batch.error_file_id}
    output = base64.b64decode(files[batch.output_file_id]["content_base64"]).decode()
    assert json.loads(output)["custom_id"] == "ok" and "secret plans" in output
    errors = base64.b64decode(files[batch.error_file_id]["content_base64"]).decode()
    assert json.loads(errors)["custom_id"] == "bad"
    (exported,) = data["batches"]
    assert exported["id"] == batch.id and exported["status"] == "completed"
    by_id = {line["custom_id"]: line for line in exported["lines"]}
    assert by_id["ok"]["body"]["messages"][0]["content"] == "secret plans for tuesday"
    assert by_id["ok"]["result"]["response"]["status_code"] == 200
    assert by_id["bad"]["result"]["response"]["status_code"] == 400
    usage = [u for u in data["usage"] if u["batch_id"] == batch.id]
    assert len(usage) == 1 and usage[0]["completion_tokens"] == 4 and "energy_wh" in usage[0]


def _check_erased(hub: Hub, org_id: int, batch: Any) -> None:
    assert _count(hub, StoredFile) == 0 and _count(hub, FileChunk) == 0
    assert _count(hub, BatchRow) == 0 and _count(hub, BatchLine) == 0
    assert _count(hub, UsageRecord, UsageRecord.org_id == org_id) == 0
    assert _count(hub, UsageRecord, UsageRecord.batch_id == batch.id) == 0
    # The request is still counted (transparency, energy), anonymously.
    assert _count(hub, UsageRecord, UsageRecord.org_id.is_(None), UsageRecord.completion_tokens == 4) == 1
    assert _count(hub, Organization, Organization.id == org_id) == 0


@pytest.fixture
def admin_key(hub: Hub, api_key: str) -> str:
    return api_key  # an organization's first key holds the scope admin


@pytest.fixture
def inference_key(hub: Hub, api_key: str) -> str:
    return create_key(hub, "acme", scopes=[INFERENCE]).secret


def test_export_and_erasure_over_the_web_api(sdk: openai.OpenAI, app_client: TestClient, hub: Hub,
                                             admin_key: str, inference_key: str) -> None:
    batch = _done_batch(sdk, app_client, hub)
    org_id = _acme(hub)
    assert app_client.get("/hub/v1/organization/export", headers={"authorization": ""}).status_code == 401
    inference = {"authorization": f"Bearer {inference_key}"}
    refused = app_client.get("/hub/v1/organization/export", headers=inference)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    admin = {"authorization": f"Bearer {admin_key}"}
    r = app_client.get("/hub/v1/organization/export", headers=admin)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.json()["format"] == "sovhub.organization-export.v1"
    _check_export(r.json(), batch)

    assert app_client.post("/hub/v1/organization/erase", json={"confirm": "acme"},
                           headers=inference).status_code == 403
    assert app_client.post("/hub/v1/organization/erase", json={"confirm": "acme"},
                           headers={"authorization": ""}).status_code == 401
    wrong = app_client.post("/hub/v1/organization/erase", json={"confirm": "ACME"}, headers=admin)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "confirmation_mismatch"
    assert _count(hub, BatchLine) == 2  # nothing erased by the refused calls
    done = app_client.post("/hub/v1/organization/erase", json={"confirm": "acme"}, headers=admin)
    assert done.status_code == 200 and done.json()["erased"] is True
    assert done.json()["data_keys_destroyed"] == 1
    _check_erased(hub, org_id, batch)
    # Its keys went with it.
    assert app_client.get("/hub/v1/organization/export", headers=admin).status_code == 401


def test_one_organizations_admin_key_cannot_reach_another(sdk: openai.OpenAI, app_client: TestClient, hub: Hub,
                                                          other_sdk: openai.OpenAI, admin_key: str) -> None:
    batch = _done_batch(sdk, app_client, hub)
    rival_admin = {"authorization": f"Bearer {create_key(hub, 'rival', scopes=[ADMIN]).secret}"}
    r = app_client.get("/hub/v1/organization/export", headers=rival_admin)
    assert r.status_code == 200 and r.json()["files"] == [] and r.json()["batches"] == []
    refused = app_client.post("/hub/v1/organization/erase", json={"confirm": "acme"}, headers=rival_admin)
    assert refused.status_code == 400  # it can only name itself
    assert _count(hub, BatchRow, BatchRow.id == batch.id) == 1


def test_export_and_erasure_from_the_cli(sdk: openai.OpenAI, app_client: TestClient, hub: Hub, data_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    batch = _done_batch(sdk, app_client, hub)
    org_id = _acme(hub)
    out = data_dir.parent / "acme.json"
    assert run_cli(data_dir, "orgs", "export", "acme", "-o", str(out)) == 0
    _check_export(json.loads(out.read_text(encoding="utf-8")), batch)
    assert run_cli(data_dir, "orgs", "export", "nobody") == 1
    assert "no organization 'nobody'" in capsys.readouterr().err
    assert run_cli(data_dir, "orgs", "erase", "acme", "--yes") == 0
    assert "data_keys_destroyed=1" in capsys.readouterr().out
    _check_erased(hub, org_id, batch)
