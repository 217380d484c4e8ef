"""Data rights: export everything about a person (CLI and API) and erase it by crypto-shredding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.errors import Conflict, NotFound
from sovhub.hookspecs import hookimpl
from sovhub.hub import Hub
from sovhub.pipeline import Principal
from sovhub.sovereignty.conversations import ContentRecorder, ConversationStore, _Pending
from sovhub.sovereignty.crypto import ContentVault
from sovhub.sovereignty.rights import erase_user, export_user
from sovhub.sovereignty.staff_access import request_access
from sovhub.sovereignty.tables import DataKey, StoredConversation
from sovhub.store.tables import User
from tests.conftest import run_cli
from tests.fakes import FakePlugin

from .conftest import add_user, new_hub, session_cookie


class WebPlugin:
    """Stands for another plugin (the web app) holding a person's data under their key."""

    def __init__(self, hub: Hub) -> None:
        self.blobs: dict[int, bytes] = {}
        self.erased: list[int] = []
        self.hub = hub

    @hookimpl
    def sovhub_export_user(self, hub: Hub, user_id: int) -> dict[str, object]:
        blob = self.blobs.get(user_id)
        return {"web_conversations": [hub.services.get(ContentVault).decrypt_for_user(user_id, blob)] if blob else []}

    @hookimpl
    def sovhub_erase_user(self, hub: Hub, user_id: int) -> None:
        self.erased.append(user_id)
        self.blobs.pop(user_id, None)


def _store_for_user(hub: Hub, user_id: int, text: str) -> None:
    hub.services.get(ConversationStore).write([_Pending(request_id="r1", org_id=None, key_id=None, user_id=user_id, model="echo",
                                   backend="fake1", messages=[{"role": "user", "content": text}],
                                   completion="ok", finish_reason="stop")])


def test_export_gathers_every_plugin_and_erase_shreds(shub: Hub) -> None:
    web = WebPlugin(shub)
    shub.pm.register(web, name="tests.web")
    try:
        uid = add_user(shub, "olena@example.ua")
        other = add_user(shub, "petro@example.ua")
        web.blobs[uid] = shub.services.get(ContentVault).encrypt_for_user(uid, "my web chat")
        _store_for_user(shub, uid, "my api question")
        _store_for_user(shub, other, "someone else")
        data = export_user(shub, uid, actor=f"user:{uid}")
        assert data["format"] == "sovhub.user-export.v1"
        assert data["user"]["email"] == "olena@example.ua" and "password_hash" not in json.dumps(data)
        assert data["web_conversations"] == ["my web chat"]
        assert [c["messages"][0]["content"] for c in data["api_conversations"]] == ["my api question"]
        assert "someone else" not in json.dumps(data)
        old_blob = web.blobs[uid]  # as if kept in a backup
        summary = erase_user(shub, uid, actor=f"user:{uid}")
        assert summary == {"data_keys_destroyed": 1, "user_rows": 1}
        assert web.erased == [uid]
        with shub.db.session() as s:
            assert s.get(User, uid) is None
            assert s.scalar(select(DataKey).where(DataKey.owner_kind == "user", DataKey.owner_id == uid)) is None
            assert [c.user_id for c in s.scalars(select(StoredConversation))] == [other]
        with pytest.raises(NotFound, match="destroyed"):
            shub.services.get(ContentVault).decrypt_for_user(uid, old_blob)  # a backup copy is unreadable too
        with pytest.raises(NotFound, match="no data"):
            export_user(shub, uid)
        from sovhub.sovereignty.audit import counts_by_event, verify

        assert counts_by_event(shub, ["user.exported", "user.erased"]) == {"user.exported": 1, "user.erased": 1}
        assert verify(shub)[1] is None
    finally:
        shub.pm.unregister(name="tests.web")


def test_legal_hold_defers_erasure(shub: Hub) -> None:
    admin = add_user(shub, "admin1@hub.example", staff=True)
    assert admin
    uid = add_user(shub, "held@example.ua")
    request_access(shub, uid, staff_id=admin, reason="court order 12/2025 on fraud case",
                   legal_hold="court order 12/2025")
    with pytest.raises(Conflict, match="legal hold"):
        erase_user(shub, uid)
    with shub.db.session() as s:
        assert s.get(User, uid) is not None


def test_me_endpoints_need_a_person_and_csrf(shub: Hub, sov_client: tuple[TestClient, FakePlugin]) -> None:
    client, _ = sov_client
    uid = add_user(shub, "me@example.ua")
    r = client.get("/hub/v1/me/export")  # API key only: an organization, not a person
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_signed_in"
    client.cookies.update(session_cookie(shub, uid, csrf="tok"))
    r = client.get("/hub/v1/me/export")
    assert r.status_code == 200 and r.json()["user"]["email"] == "me@example.ua"
    assert client.post("/hub/v1/me/erase").status_code == 403  # no CSRF token
    assert client.post("/hub/v1/me/erase", headers={"x-csrf-token": "wrong"}).status_code == 403
    r = client.post("/hub/v1/me/erase", headers={"x-csrf-token": "tok"})
    assert r.status_code == 200 and r.json()["erased"] is True
    assert "sovhub_session" in r.headers.get("set-cookie", "")
    with shub.db.session() as s:
        assert s.get(User, uid) is None


def test_web_principal_content_is_stored_under_the_person(shub: Hub) -> None:
    recorder = ContentRecorder(shub)
    assert recorder.name == "sovereignty.content"
    uid = add_user(shub, "web@example.ua")
    _store_for_user(shub, uid, "hello")
    with shub.db.session() as s:
        row = s.scalar(select(StoredConversation))
    assert row is not None and row.owner_kind == "user" and row.owner_id == uid
    assert Principal(org_id=None, user_id=uid).label == f"user:{uid}"


def test_users_cli_export_and_erase(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = new_hub(data_dir, None)
    uid = add_user(hub, "cli@example.ua")
    _store_for_user(hub, uid, "cli question")
    out_file = data_dir.parent / "export.json"
    assert run_cli(data_dir, "users", "export", "cli@example.ua", "-o", str(out_file)) == 0
    assert json.loads(out_file.read_text())["api_conversations"][0]["messages"][0]["content"] == "cli question"
    assert run_cli(data_dir, "users", "export", "nobody@example.ua") == 1
    assert "no user with e-mail 'nobody@example.ua'" in capsys.readouterr().err
    assert run_cli(data_dir, "users", "erase", "cli@example.ua", "--yes") == 0
    assert "data_keys_destroyed=1" in capsys.readouterr().out
    assert run_cli(data_dir, "users", "export", str(uid)) == 1
    hub.close()


def test_erasure_under_a_hold_is_409_and_goes_through_once_the_hold_ends(
    shub: Hub, sov_client: tuple[TestClient, FakePlugin]
) -> None:
    from datetime import timedelta

    from sovhub.sovereignty.tables import AccessRequest
    from sovhub.store.base import utcnow

    client, _ = sov_client
    admin = add_user(shub, "admin2@hub.example", staff=True)
    uid = add_user(shub, "held2@example.ua")
    hold = request_access(shub, uid, staff_id=admin, reason="prosecutor order 3/2026, fraud inquiry",
                          legal_hold="prosecutor order 3/2026", hold_days=30)
    client.cookies.update(session_cookie(shub, uid, csrf="tok"))
    refused = client.post("/hub/v1/me/erase", headers={"x-csrf-token": "tok"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict" and "legal hold" in refused.json()["error"]["message"]
    with shub.db.session() as s:
        assert s.get(User, uid) is not None
    # A hold one second from its end still holds.
    with shub.db.session() as s:
        s.get(AccessRequest, hold.id).notice_after = utcnow() + timedelta(seconds=1)  # type: ignore[union-attr]
    with pytest.raises(Conflict, match=f"access request {hold.id}"):
        erase_user(shub, uid)
    # The hold's period ends: the person's erasure request is honoured, and everything goes.
    with shub.db.session() as s:
        s.get(AccessRequest, hold.id).notice_after = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    done = client.post("/hub/v1/me/erase", headers={"x-csrf-token": "tok"})
    assert done.status_code == 200 and done.json()["erased"] is True
    with shub.db.session() as s:
        assert s.get(User, uid) is None
        assert s.scalars(select(AccessRequest).where(AccessRequest.user_id == uid)).first() is None
