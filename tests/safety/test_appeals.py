"""Appeals: filed by the person affected, decided by staff on the CLI, counted in the report."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.hub import Hub
from sovhub.safety.tables import Appeal, ModerationLog
from tests.safety.pipeline_fixtures import MarkerPlugin, marker_fixture, pipeline_settings  # noqa: F401 - fixtures


def _blocked(client: TestClient) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": "KABOOM tonight"}]})
    assert r.status_code == 403
    return r.json()["error"]  # type: ignore[no-any-return]


def _cli(hub: Hub, args: list[str]) -> Any:
    """Run `sovhub ARGS` on this hub: the plugin's group, invoked below the root (which would
    build its own hub from the data dir)."""
    import click

    from sovhub.cli import HubContext
    from sovhub.safety.plugin import sovhub_commands

    root = click.Group("sovhub")
    sovhub_commands(root)
    assert args[0] == "safety"
    ctx = HubContext(str(hub.settings.data_dir))
    ctx._hub = hub
    return CliRunner().invoke(root.commands["safety"], args[1:], obj=ctx, catch_exceptions=False,
                              standalone_mode=False)


def test_file_read_and_decide(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    error = _blocked(app_client)
    r = app_client.post("/hub/v1/appeals", json={"decision_id": error["decision_id"],
                                                 "reason": "It was a film title, not a plan."})
    assert r.status_code == 201
    appeal = r.json()
    assert appeal["status"] == "filed" and appeal["categories"] == ["S1"] and appeal["policy_version"] == "2025.1"
    assert app_client.get(f"/hub/v1/appeals/{appeal['id']}").json()["status"] == "filed"

    listed = _cli(hub, ["safety", "appeals", "list"])
    assert appeal["id"] in listed.output
    decided = _cli(hub, ["safety", "appeals", "decide", appeal["id"], "--overturn", "--reason", "Fiction."])
    assert "overturned" in decided.output
    after = app_client.get(f"/hub/v1/appeals/{appeal['id']}").json()
    assert (after["status"], after["decision_reason"]) == ("overturned", "Fiction.")
    assert after["decided_at"] is not None

    from sovhub.safety.plugin import sovhub_transparency

    report = sovhub_transparency(hub)["safety"]
    assert report["appeals"]["filed"] == 1 and report["appeals"]["overturned"] == 1
    assert report["appeals"]["by_category"] == {"S1": {"filed": 1, "upheld": 0, "overturned": 1}}
    assert report["moderation"]["actions"] == {"block": 1}
    assert report["moderation"]["by_category"] == {"S1": {"block": 1}}


def test_log_keeps_no_content_and_appeal_content_needs_consent(
    app_client: TestClient, hub: Hub, marker: MarkerPlugin
) -> None:
    error = _blocked(app_client)
    with hub.db.session() as s:
        row = s.get(ModerationLog, error["decision_id"])
        assert row is not None and row.content is None and row.categories == ["S1"]
        assert row.policy_version == "2025.1" and row.principal.startswith("key:")
    r = app_client.post("/hub/v1/appeals", json={"decision_id": error["decision_id"], "reason": "r",
                                                 "content": "KABOOM tonight"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "consent_required"
    r = app_client.post("/hub/v1/appeals", json={"decision_id": error["decision_id"], "reason": "r",
                                                 "content": "KABOOM tonight", "consent_to_store_content": True})
    assert r.status_code == 201
    with hub.db.session() as s:
        stored = s.scalars(select(Appeal)).one()
        assert stored.consent and stored.content == "KABOOM tonight"


def test_appeal_errors(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    error = _blocked(app_client)
    decision = error["decision_id"]
    assert app_client.post("/hub/v1/appeals", json={"decision_id": "mod_nope", "reason": "x"}).status_code == 404
    assert app_client.post("/hub/v1/appeals", json={"decision_id": decision, "reason": "  "}).status_code == 400
    assert app_client.post("/hub/v1/appeals", json={"decision_id": decision}).status_code == 400
    assert app_client.get("/hub/v1/appeals/apl_nope").status_code == 404
    first = app_client.post("/hub/v1/appeals", json={"decision_id": decision, "reason": "x"}).json()
    again = app_client.post("/hub/v1/appeals", json={"decision_id": decision, "reason": "x"})
    assert again.status_code == 409

    # Another organization can neither appeal nor read this decision's appeal.
    create_org(hub, "other")
    other = {"authorization": f"Bearer {create_key(hub, 'other').secret}"}
    assert app_client.get(f"/hub/v1/appeals/{first['id']}", headers=other).status_code == 404
    r = app_client.post("/hub/v1/appeals", json={"decision_id": decision, "reason": "x"}, headers=other)
    assert r.status_code == 404


def test_staff_decision_errors(app_client: TestClient, hub: Hub, marker: MarkerPlugin) -> None:
    from sovhub.errors import Conflict, InvalidRequest, NotFound

    appeal = app_client.post("/hub/v1/appeals", json={"decision_id": _blocked(app_client)["decision_id"],
                                                      "reason": "x"}).json()
    with pytest.raises(InvalidRequest):
        _cli(hub, ["safety", "appeals", "decide", appeal["id"], "--reason", "no outcome"])
    with pytest.raises(InvalidRequest):
        _cli(hub, ["safety", "appeals", "decide", appeal["id"], "--uphold", "--reason", " "])
    with pytest.raises(NotFound):
        _cli(hub, ["safety", "appeals", "decide", "apl_nope", "--uphold", "--reason", "r"])
    assert "upheld" in _cli(hub, ["safety", "appeals", "decide", appeal["id"], "--uphold", "--reason", "r"]).output
    with pytest.raises(Conflict):
        _cli(hub, ["safety", "appeals", "decide", appeal["id"], "--overturn", "--reason", "r"])
    listed = _cli(hub, ["safety", "appeals", "list", "--status", "all", "--json"])
    assert '"status": "upheld"' in listed.output
