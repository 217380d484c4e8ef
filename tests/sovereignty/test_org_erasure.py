"""An organization's export lists, and its erasure removes, its API conversations, stored responses, moderation
decisions and appeals (found by organization id), and nothing of another organization."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sovhub.accounts import create_key, create_org
from sovhub.api.responses.tables import StoredResponse
from sovhub.hub import Hub
from sovhub.safety.interceptor import SafetyRuntime
from sovhub.safety.tables import Appeal, ModerationLog
from sovhub.sovereignty.content_store import ConversationStore
from sovhub.sovereignty.tables import StoredConversation
from sovhub.store.tables import Organization
from tests.safety.pipeline_fixtures import MarkerPlugin, marker_fixture, pipeline_settings  # noqa: F401 - fixtures


def _traffic(client: TestClient, headers: dict[str, str], words: str) -> dict[str, str]:
    """One stored chat exchange, one stored response, one blocked request with an appeal against it."""
    chat = client.post("/v1/chat/completions", headers=headers, json={
        "model": "echo", "messages": [{"role": "user", "content": f"chat {words}"}]})
    assert chat.status_code == 200, chat.text
    response = client.post("/v1/responses", headers=headers, json={
        "model": "echo", "input": f"response {words}", "store": True})
    assert response.status_code == 200, response.text
    blocked = client.post("/v1/chat/completions", headers=headers, json={
        "model": "echo", "messages": [{"role": "user", "content": f"KABOOM {words}"}]})
    assert blocked.status_code == 403
    decision = blocked.json()["error"]["decision_id"]
    appeal = client.post("/hub/v1/appeals", headers=headers, json={
        "decision_id": decision, "reason": f"appeal {words}", "content": f"KABOOM {words}",
        "consent_to_store_content": True})
    assert appeal.status_code == 201, appeal.text
    return {"response": response.json()["id"], "decision": decision, "appeal": appeal.json()["id"]}


def _flush(client: TestClient, hub: Hub) -> None:
    client.portal.call(hub.services.get(ConversationStore).flush)  # type: ignore[union-attr]
    hub.services.get(SafetyRuntime).recorder.flush()


def _count(hub: Hub, table: Any, *where: Any) -> int:
    with hub.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _org_id(hub: Hub, name: str) -> int:
    with hub.db.session() as s:
        found = s.scalar(select(Organization.id).where(Organization.name == name))
    assert found is not None
    return int(found)


def test_org_export_lists_and_erasure_removes_conversations_responses_and_appeals(
        app_client: TestClient, hub: Hub, api_key: str, marker: MarkerPlugin) -> None:
    create_org(hub, "rival")
    rival_headers = {"authorization": f"Bearer {create_key(hub, 'rival').secret}"}
    admin = {"authorization": f"Bearer {api_key}"}  # acme's first key holds the scope admin
    acme = _traffic(app_client, admin, "tuesday plans")
    rival = _traffic(app_client, rival_headers, "rival secrets")
    _flush(app_client, hub)
    acme_id, rival_id = _org_id(hub, "acme"), _org_id(hub, "rival")

    exported = app_client.get("/hub/v1/organization/export", headers=admin)
    assert exported.status_code == 200
    data = exported.json()
    # The chat exchange, and the chat the stored response ran through.
    asked = sorted(c["messages"][0]["content"] for c in data["api_conversations"])
    assert asked == ["chat tuesday plans", "response tuesday plans"]
    (stored,) = data["api_responses"]
    assert stored["id"] == acme["response"]
    assert "response tuesday plans" in str(stored)
    assert [d["id"] for d in data["moderation_decisions"]] == [acme["decision"]]
    (appeal,) = data["appeals"]
    assert (appeal["id"], appeal["reason"], appeal["content"]) == (acme["appeal"], "appeal tuesday plans",
                                                                   "KABOOM tuesday plans")
    assert "rival secrets" not in exported.text

    done = app_client.post("/hub/v1/organization/erase", json={"confirm": "acme"}, headers=admin)
    assert done.status_code == 200 and done.json()["erased"] is True
    assert _count(hub, StoredConversation, StoredConversation.org_id == acme_id) == 0
    assert _count(hub, StoredResponse, StoredResponse.id == acme["response"]) == 0
    assert _count(hub, Appeal, Appeal.id == acme["appeal"]) == 0
    with hub.db.session() as s:
        decision = s.get(ModerationLog, acme["decision"])
        # Kept as an anonymous count for the transparency report: no organization, person, principal, content.
        assert decision is not None
        assert (decision.org_id, decision.user_id, decision.principal, decision.content) == (None, None, "erased",
                                                                                             None)
    # The other organization keeps all of its own.
    assert _count(hub, StoredConversation, StoredConversation.org_id == rival_id) == 2
    assert _count(hub, StoredResponse, StoredResponse.id == rival["response"]) == 1
    assert _count(hub, Appeal, Appeal.id == rival["appeal"]) == 1
    with hub.db.session() as s:
        kept = s.get(ModerationLog, rival["decision"])
        assert kept is not None and kept.org_id == rival_id
    still = app_client.get(f"/v1/responses/{rival['response']}", headers=rival_headers)
    assert still.status_code == 200 and still.json()["id"] == rival["response"]
