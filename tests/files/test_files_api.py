"""POST/GET/DELETE /v1/files with the openai SDK; objects checked against OpenAI's schemas; attacks refused."""

from __future__ import annotations

import io

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.files.tables import FileChunk, StoredFile
from sovhub.hub import Hub
from sovhub.sovereignty.rights import erase_org, export_org
from sovhub.store.tables import Organization
from tests.conftest import make_settings
from tests.contract.schemas import assert_valid

JSONL = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'


def test_upload_retrieve_content_list_delete(sdk: openai.OpenAI, app_client: TestClient, hub: Hub) -> None:
    created = sdk.files.create(file=("input.jsonl", io.BytesIO(JSONL)), purpose="batch")
    assert created.id.startswith("file-") and created.bytes == len(JSONL) and created.purpose == "batch"
    assert created.filename == "input.jsonl" and created.status == "processed"
    # batch files expire after 30 days by default
    assert created.expires_at is not None and created.expires_at - created.created_at == 30 * 86400
    raw = app_client.get(f"/v1/files/{created.id}").json()
    assert_valid("OpenAIFile", raw)
    assert sdk.files.retrieve(created.id).id == created.id
    assert sdk.files.content(created.id).content == JSONL

    notes = sdk.files.create(file=("notes.txt", io.BytesIO(b"hello")), purpose="user_data")
    assert notes.expires_at is None  # user_data files stay until deleted
    listing = app_client.get("/v1/files").json()
    assert_valid("ListFilesResponse", listing)
    assert [f["id"] for f in listing["data"]] == [notes.id, created.id]  # newest first
    assert [f.id for f in sdk.files.list(purpose="batch")] == [created.id]
    page = app_client.get("/v1/files", params={"limit": 1}).json()
    assert page["has_more"] is True and page["data"][0]["id"] == notes.id
    page2 = app_client.get("/v1/files", params={"limit": 1, "after": notes.id}).json()
    assert page2["has_more"] is False and page2["data"][0]["id"] == created.id
    assert [f["id"] for f in app_client.get("/v1/files", params={"order": "asc"}).json()["data"]] == \
        [created.id, notes.id]

    deleted = app_client.delete(f"/v1/files/{notes.id}").json()
    assert_valid("DeleteFileResponse", deleted)
    assert deleted == {"id": notes.id, "object": "file", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(notes.id)


def test_content_is_encrypted_at_rest_in_chunks(hub: Hub, sdk: openai.OpenAI) -> None:
    secret = b"MINISTRY-SECRET-" * 200_000  # 3.2 MB: several 1 MiB chunks
    created = sdk.files.create(file=("big.bin", io.BytesIO(secret)), purpose="user_data")
    with hub.db.session() as s:
        row = s.scalar(select(StoredFile).where(StoredFile.id == created.id))
        assert row is not None
        chunks = list(s.scalars(select(FileChunk.data).where(FileChunk.file_seq == row.seq)))
    assert len(chunks) == 4
    assert all(b"MINISTRY-SECRET" not in c for c in chunks)
    assert sdk.files.content(created.id).content == secret


def test_chunks_swapped_between_files_fail_to_open(hub: Hub, sdk: openai.OpenAI) -> None:
    a = sdk.files.create(file=("a.txt", io.BytesIO(b"aaaa")), purpose="user_data")
    b = sdk.files.create(file=("b.txt", io.BytesIO(b"bbbb")), purpose="user_data")
    with hub.db.session() as s:
        rows = {r.id: r.seq for r in s.scalars(select(StoredFile))}
        chunk_a = s.get(FileChunk, (rows[a.id], 0))
        chunk_b = s.get(FileChunk, (rows[b.id], 0))
        assert chunk_a is not None and chunk_b is not None
        chunk_a.data, chunk_b.data = chunk_b.data, chunk_a.data
    with pytest.raises(openai.APIStatusError):
        sdk.files.content(a.id).content  # noqa: B018


def test_another_organizations_file_is_not_found(sdk: openai.OpenAI, other_sdk: openai.OpenAI) -> None:
    mine = sdk.files.create(file=("mine.jsonl", io.BytesIO(JSONL)), purpose="batch")
    for call in (lambda: other_sdk.files.retrieve(mine.id), lambda: other_sdk.files.content(mine.id).content,
                 lambda: other_sdk.files.delete(mine.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(other_sdk.files.list()) == []
    with pytest.raises(openai.BadRequestError):
        other_sdk.files.list(after=mine.id)  # a cursor of another organization names nothing
    assert sdk.files.content(mine.id).content == JSONL  # untouched


@pytest.mark.parametrize("purpose", ["fine-tune", "assistants", "batch_output", ""])
def test_bad_purpose_is_refused_and_nothing_is_kept(sdk: openai.OpenAI, hub: Hub, purpose: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.files.create(file=("x.jsonl", io.BytesIO(JSONL)), purpose=purpose)  # type: ignore[arg-type]
    assert info.value.body["param"] == "purpose"  # type: ignore[index]
    with hub.db.session() as s:
        assert s.scalar(select(StoredFile)) is None


def test_over_size_upload_is_refused_early(data_dir, fake_plugin) -> None:  # noqa: ANN001
    from sovhub.accounts import create_key, create_org
    from sovhub.app import create_app
    from sovhub.hub import build_hub

    hub = build_hub(make_settings(data_dir, files={"max_bytes": 100_000, "chunk_bytes": 16_384}))
    try:
        hub.pm.register(fake_plugin, name="tests.fake2")
        create_org(hub, "acme")
        secret = create_key(hub, "acme").secret
        with TestClient(create_app(hub), headers={"authorization": f"Bearer {secret}"}) as client:
            sdk = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=secret, http_client=client, max_retries=0)
            # over the file limit but under the declared body limit: refused while streaming
            with pytest.raises(openai.APIStatusError) as info:
                sdk.files.create(file=("big.bin", io.BytesIO(b"x" * 100_001)), purpose="user_data")
            assert info.value.status_code == 413 and info.value.body["code"] == "file_too_large"  # type: ignore[index]
            # a declared length far beyond: refused before a byte is read
            big = client.post("/v1/files", content=b"x" * 200_000,
                              headers={"content-type": "multipart/form-data; boundary=b"})
            assert big.status_code == 413
            ok = sdk.files.create(file=("fits.bin", io.BytesIO(b"y" * 100_000)), purpose="user_data")
            assert sdk.files.content(ok.id).content == b"y" * 100_000
        with hub.db.session() as s:
            assert [r.bytes for r in s.scalars(select(StoredFile))] == [100_000]  # nothing of the refused one
            assert all(len(c) < 17_000 for c in s.scalars(select(FileChunk.data)))
    finally:
        hub.close()


def test_not_multipart_and_missing_file_are_refused(app_client: TestClient) -> None:
    assert app_client.post("/v1/files", json={"purpose": "batch"}).status_code == 400
    r = app_client.post("/v1/files", data={"purpose": "batch"}, files={"other": ("x", b"1")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_expires_after_and_expired_files_vanish(sdk: openai.OpenAI, hub: Hub, app_client: TestClient) -> None:
    from datetime import timedelta

    from sovhub.files.store import FileStore

    f = sdk.files.create(file=("a.jsonl", io.BytesIO(JSONL)), purpose="batch",
                         expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    bad = app_client.post("/v1/files", data={"purpose": "batch", "expires_after[anchor]": "created_at",
                                             "expires_after[seconds]": "10"}, files={"file": ("a", b"1")})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_after"
    with hub.db.session() as s:
        row = s.scalar(select(StoredFile).where(StoredFile.id == f.id))
        assert row is not None
        row.expires_at = row.created_at - timedelta(seconds=1)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(f.id)
    assert hub.services.get(FileStore).purge() == 1
    with hub.db.session() as s:
        assert s.scalar(select(FileChunk)) is None


def test_files_are_in_the_org_export_and_gone_after_its_erasure(sdk: openai.OpenAI, hub: Hub) -> None:
    f = sdk.files.create(file=("a.jsonl", io.BytesIO(JSONL)), purpose="batch")
    with hub.db.session() as s:
        org_id = s.scalar(select(Organization.id).where(Organization.name == "acme"))
    assert org_id is not None
    exported = export_org(hub, org_id)
    import base64

    assert [x["id"] for x in exported["files"]] == [f.id]
    assert base64.b64decode(exported["files"][0]["content_base64"]) == JSONL
    with hub.db.session() as s:
        blob = s.scalar(select(FileChunk.data))
    summary = erase_org(hub, org_id)
    assert summary["data_keys_destroyed"] == 1
    with hub.db.session() as s:
        assert s.scalar(select(StoredFile)) is None and s.scalar(select(FileChunk)) is None
    from sovhub.errors import NotFound
    from sovhub.sovereignty.crypto import ContentVault

    with pytest.raises(NotFound):  # a backup's copy of the chunk no longer opens
        hub.services.get(ContentVault).decrypt_bytes("org", org_id, blob or b"")


def test_web_principal_without_organization_is_refused(app_client: TestClient) -> None:
    r = app_client.get("/v1/files", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401
