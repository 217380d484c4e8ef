"""Every table that links a row to a person is exported and erased by some capability's hook.

The test seeds one row for the person in every table that has a person column, erases, and
checks that no row still points at them. A new table with a `user_id` (or an owner id) fails
here until its capability implements `sovhub_export_user` / `sovhub_erase_user` for it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Table, and_, func, select

from sovhub.access.session_store import create_session
from sovhub.access.tables import Identity, PersonAccess
from sovhub.api.responses.tables import StoredResponse
from sovhub.assistant.tables import Conversation, ConversationAttachment, ConversationMessage
from sovhub.credits.tables import CreditPartner, CreditPartnerMember
from sovhub.files.tables import StoredFile
from sovhub.hub import Hub
from sovhub.safety.tables import Appeal, ModerationLog
from sovhub.sovereignty.crypto import ContentVault
from sovhub.sovereignty.rights import erase_user, export_user
from sovhub.sovereignty.staff_access import request_access
from sovhub.sovereignty.tables import StoredConversation
from sovhub.store.base import Base
from sovhub.store.tables import Membership, Organization, UsageRecord, User

from .conftest import add_user

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _person_tables() -> dict[str, Table]:
    """Tables with a column that names a person: user_id, or owner_id beside owner_kind."""
    return {t.name: t for t in Base.metadata.tables.values() if "user_id" in t.c or "owner_id" in t.c}


def _rows_about(hub: Hub, table: Table, uid: int) -> int:
    if "user_id" in table.c:
        where = table.c.user_id == uid
    else:
        where = and_(table.c.owner_kind == "user", table.c.owner_id == uid)
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(where)) or 0)


def _seed(hub: Hub, uid: int) -> None:
    vault = hub.services.get(ContentVault)
    stored, title, message = (vault.encrypt_for_user(uid, t) for t in (json.dumps({"messages": []}), "my title", "{}"))
    with hub.db.session() as s:
        org = Organization(name="acme")
        s.add(org)
        s.flush()
        s.add(Membership(user_id=uid, org_id=org.id, role="member"))
        partner = CreditPartner(name="Development Bank")
        s.add(partner)
        s.flush()
        s.add(CreditPartnerMember(partner_id=partner.id, user_id=uid, added_by="tests"))
        s.add(Identity(idp="eid-ua", subject="UA-1234567890", user_id=uid, level="high", given_name="Olena",
                       family_name="Kovalenko", birthdate="1990-04-01"))
        s.add(PersonAccess(user_id=uid, tier="pilot", limits={"rpd": 50}, updated_by="user:1"))
        s.add(ModerationLog(id="mod_1", direction="input", action="block", categories=["violence"], clauses=["3.1"],
                            policy_version="v1", principal=f"user:{uid}", user_id=uid, content="my words"))
        s.flush()
        s.add(Appeal(id="apl_1", log_id="mod_1", principal=f"user:{uid}", user_id=uid,
                     reason="I was quoting a news article", consent=True, content="my words"))
        s.add(UsageRecord(ts=NOW, request_id="req_1", org_id=org.id, user_id=uid, endpoint="chat",
                          model="echo", prompt_tokens=3, completion_tokens=4))
        s.add(StoredConversation(request_id="req_1", owner_kind="user", owner_id=uid, user_id=uid, model="echo",
                                 content=stored,
                                 expires_at=NOW))
        s.add(StoredResponse(id="resp_1", owner_kind="user", owner_id=uid, user_id=uid, model="echo",
                             status="completed", content=vault.encrypt_for_user(uid, json.dumps(
                                 {"response": {"id": "resp_1"}, "input_items": [], "messages": []})),
                             created_at=NOW, expires_at=NOW))
        s.add(Conversation(id="c" * 32, user_id=uid, title=title, model="echo"))
        s.add(StoredFile(id="file-1", org_id=org.id, user_id=uid, purpose="user_data", filename="notes.txt",
                         bytes=0, complete=True))
        s.flush()
        s.add(ConversationMessage(conversation_id="c" * 32, role="user", content=message))
        s.add(ConversationAttachment(conversation_id="c" * 32, user_id=uid, media_type="text/plain", size_bytes=2,
                                     content=vault.encrypt_for_user(uid, json.dumps({"name": "a.txt", "passages": []}))))
    admin = add_user(hub, "admin1@hub.example", staff=True)
    assert admin
    request_access(hub, uid, staff_id=admin, reason="a support ticket about my account")
    create_session(hub, uid, acr="high", idp="eid-ua", user_agent="Firefox", address="203.0.113.7")


def test_erasure_leaves_no_row_pointing_at_the_person(shub: Hub) -> None:
    uid = add_user(shub, "olena@example.ua")
    other = add_user(shub, "petro@example.ua")
    _seed(shub, uid)
    tables = _person_tables()
    unseeded = sorted(name for name, t in tables.items() if _rows_about(shub, t, uid) == 0)
    # A new personal table must be seeded above and erased by its capability's hook.
    assert unseeded == [], f"tables with a person column that this test does not cover: {unseeded}"
    erase_user(shub, uid)
    left = {name: n for name, t in tables.items() if (n := _rows_about(shub, t, uid))}
    assert left == {}
    with shub.db.session() as s:
        decision = s.get(ModerationLog, "mod_1")  # kept as an anonymous count
        assert decision is not None and (decision.principal, decision.content) == ("erased", None)
        assert s.get(Appeal, "apl_1") is None
        usage = s.scalar(select(UsageRecord))
        assert usage is not None and usage.user_id is None and usage.completion_tokens == 4
        assert s.get(User, other) is not None  # nobody else is touched


def test_export_holds_every_capability_part(shub: Hub) -> None:
    uid = add_user(shub, "olena@example.ua")
    _seed(shub, uid)
    data = export_user(shub, uid)
    assert [(i["subject"], i["given_name"], i["birthdate"]) for i in data["eid_identities"]] == [
        ("UA-1234567890", "Olena", "1990-04-01")]
    assert [(a["reason"], a["content"]) for a in data["appeals"]] == [("I was quoting a news article", "my words")]
    assert [(d["id"], d["action"]) for d in data["moderation_decisions"]] == [("mod_1", "block")]
    assert [r["reason"] for r in data["staff_access"]] == ["a support ticket about my account"]
    assert [(u["request_id"], u["completion_tokens"]) for u in data["usage"]] == [("req_1", 4)]
    assert [c["title"] for c in data["assistant_conversations"]] == ["my title"]
    assert [f["filename"] for f in data["uploaded_files"]] == ["notes.txt"]
    assert [(r["id"], r["response"]["id"]) for r in data["api_responses"]] == [("resp_1", "resp_1")]
    assert [(w["address"], w["user_agent"]) for w in data["web_sessions"]] == [("203.0.113.7", "Firefox")]
    assert data["credit_partners"] == ["Development Bank"]
    assert (data["access_profile"]["tier"], data["access_profile"]["limits"]) == ("pilot", {"rpd": 50})
    json.dumps(data)  # JSON-able as a whole


def test_a_new_personal_table_without_a_hook_fails_the_check(shub: Hub) -> None:
    """The guard itself can fail: a table the hooks do not erase is reported."""
    from sqlalchemy import Column, Integer, MetaData

    extra = Table("tests_orphan_notes", MetaData(), Column("id", Integer, primary_key=True),
                  Column("user_id", Integer))
    extra.create(shub.db.engine)
    try:
        uid = add_user(shub, "olena@example.ua")
        with shub.db.engine.begin() as conn:
            conn.execute(extra.insert().values(user_id=uid))
        erase_user(shub, uid)
        assert _rows_about(shub, extra, uid) == 1
    finally:
        extra.drop(shub.db.engine)
