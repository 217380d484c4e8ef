"""Input beyond text: item references, text files (Files API or inline), and clear refusals of
images, file URLs, binary files and the conversation parameter."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.api.responses.items import MAX_FILE_BYTES
from sovhub.files.store import FileStore
from sovhub.hub import Hub
from sovhub.store.tables import Organization
from tests.contract.schemas import assert_valid


def _org_id(hub: Hub, name: str = "acme") -> int:
    with hub.db.session() as s:
        return int(s.execute(select(Organization.id).where(Organization.name == name)).scalar_one())


def _put(hub: Hub, data: bytes, name: str, org: str = "acme") -> str:
    return hub.services.get(FileStore).put(_org_id(hub, org), data, purpose="user_data", filename=name).id


def _create(client: TestClient, **body) -> dict:
    r = client.post("/v1/responses", json={"model": "echo", **body})
    assert r.status_code == 200, r.text
    assert_valid("Response", r.json())
    return r.json()


def _refused(client: TestClient, body: dict, param: str | None = None) -> dict:
    r = client.post("/v1/responses", json={"model": "echo", **body})
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    if param is not None:
        assert error["param"] == param, error
    return error


def test_an_item_reference_brings_back_an_earlier_item(app_client: TestClient, fake_plugin) -> None:
    first = _create(app_client, input="the apples are ripe")
    answer = first["output"][0]["id"]
    asked = app_client.get(f"/v1/responses/{first['id']}/input_items").json()["data"][0]["id"]
    out = _create(app_client, input=[{"type": "item_reference", "id": asked}, {"type": "item_reference", "id": answer},
                                     {"role": "user", "content": "and the pears?"}])
    seen = fake_plugin.instances["fake1"].received[-1]
    assert [(m["role"], m["content"]) for m in seen] == [
        ("user", "the apples are ripe"), ("assistant", "the apples are ripe"), ("user", "and the pears?")]
    listed = app_client.get(f"/v1/responses/{out['id']}/input_items", params={"order": "asc"}).json()
    assert_valid("ResponseItemList", listed)
    assert [i["id"] for i in listed["data"][:2]] == [asked, answer]
    error = _refused(app_client, {"input": [{"type": "item_reference", "id": "msg_nowhere"}]}, "input[0]")
    assert error["code"] == "item_not_found"
    _refused(app_client, {"input": [{"type": "item_reference"}]}, "input[0]")


def test_a_text_file_of_the_files_api_is_read_by_the_model(app_client: TestClient, hub: Hub, fake_plugin) -> None:
    file_id = _put(hub, "Квітень: 12 відвідувачів\nТравень: 30\n".encode(), "visits.txt")
    out = _create(app_client, input=[{"role": "user", "content": [
        {"type": "input_file", "file_id": file_id}, {"type": "input_text", "text": "Sum the visitors."}]}])
    seen = fake_plugin.instances["fake1"].received[-1][-1]["content"]
    assert "[file visits.txt]" in seen and "Травень: 30" in seen and seen.endswith("Sum the visitors.")
    [item] = app_client.get(f"/v1/responses/{out['id']}/input_items").json()["data"]
    assert item["content"][0] == {"type": "input_file", "file_id": file_id}  # named, not copied into the item


def test_an_inline_text_file_is_read_by_the_model(app_client: TestClient, fake_plugin) -> None:
    data = base64.b64encode(b"line one\nline two").decode()
    for file_data in (data, f"data:text/plain;base64,{data}"):
        _create(app_client, input=[{"role": "user", "content": [
            {"type": "input_file", "filename": "notes.txt", "file_data": file_data}]}])
        assert "line two" in fake_plugin.instances["fake1"].received[-1][-1]["content"]


@pytest.mark.parametrize("data", [b"%PDF-1.7\n\xe2\xe3\xcf\xd3 binary", b"PNG\x00\x00\x00\rIHDR", b"\xff\xfe\x00t"])
def test_a_file_that_is_not_text_is_a_clear_400(app_client: TestClient, hub: Hub, data: bytes) -> None:
    file_id = _put(hub, data, "report.pdf")
    for part in ({"type": "input_file", "file_id": file_id},
                 {"type": "input_file", "filename": "report.pdf", "file_data": base64.b64encode(data).decode()}):
        error = _refused(app_client, {"input": [{"role": "user", "content": [part]}]})
        assert error["code"] == "unsupported_parameter" and "text file" in error["message"]


def test_file_refusals(app_client: TestClient, hub: Hub) -> None:
    create_org(hub, "rival")
    create_key(hub, "rival")
    theirs = _put(hub, b"rival secrets", "theirs.txt", org="rival")
    big = _put(hub, b"x" * (MAX_FILE_BYTES + 1), "big.txt")

    def part(p: dict) -> dict:
        return {"input": [{"role": "user", "content": [p]}]}

    assert _refused(app_client, part({"type": "input_file", "file_id": theirs}))["code"] == "file_not_found"
    assert _refused(app_client, part({"type": "input_file", "file_id": "file-missing"}))["code"] == "file_not_found"
    assert _refused(app_client, part({"type": "input_file", "file_id": big}))["code"] == "file_too_large"
    url = _refused(app_client, part({"type": "input_file", "file_url": "https://example.org/a.txt"}))
    assert "file_url" in url["message"] and url["param"] == "input[0].content[0]"
    _refused(app_client, part({"type": "input_file"}))
    _refused(app_client, part({"type": "input_file", "filename": "a.txt", "file_data": "not base64!"}))


def test_images_and_conversations_are_clear_400s(app_client: TestClient) -> None:
    image = _refused(app_client, {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": "data:image/png;base64,x"}]}]},
        "input[0].content[1]")
    assert image["code"] == "unsupported_parameter" and "echo cannot read images" in image["message"]
    conversation = _refused(app_client, {"input": "x", "conversation": "conv_123"}, "conversation")
    assert "previous_response_id" in conversation["message"]
