"""Model tiers: the 403 with a way forward, /v1/models listing only usable models, custom tiers, CLI."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from sovhub.access.tiers import grant_tier, list_tiers, set_tier
from sovhub.access.verification import staff_verify
from sovhub.errors import InvalidRequest

from .conftest import bearer, chat, org_with_key


def _models(client: Any, secret: str) -> set[str]:
    r = client.get("/v1/models", headers=bearer(secret))
    assert r.status_code == 200
    return {m["id"] for m in r.json()["data"]}


def test_unverified_org_gets_403_with_how_to_verify(make_app: Any) -> None:
    hub, client = make_app()
    org_id, secret, _ = org_with_key(hub, "acme")
    set_tier(hub, "advanced", "verified")
    r = chat(client, secret, model="advanced")
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "organization_not_verified" and err["type"] == "permission_error"
    assert "GET /hub/v1/organization/verification" in err["message"] and "eID" in err["message"]
    assert "acme" in err["message"]
    models = _models(client, secret)
    assert "echo" in models and "advanced" not in models
    assert client.get("/v1/models/advanced", headers=bearer(secret)).status_code == 404

    staff_verify(hub, org_id, reason="checked papers", actor="test")
    assert chat(client, secret, model="advanced").status_code == 200
    assert "advanced" in _models(client, secret)


def test_tier_refusal_does_not_use_quota(make_app: Any) -> None:
    hub, client = make_app()
    _, secret, _ = org_with_key(hub, "acme", rpm=1)
    set_tier(hub, "advanced", "verified")
    assert chat(client, secret, model="advanced").status_code == 403
    assert chat(client, secret, model="echo").status_code == 200


def test_custom_tier_needs_a_grant(make_app: Any) -> None:
    hub, client = make_app()
    org_id, secret, _ = org_with_key(hub, "acme")
    set_tier(hub, "research", "research")
    staff_verify(hub, org_id, reason="ok", actor="test")  # verification alone does not open custom tiers
    r = chat(client, secret, model="research")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_tier_not_granted"
    assert "research" not in _models(client, secret)
    assert grant_tier(hub, org_id, "research") == ["research"]
    assert chat(client, secret, model="research").status_code == 200
    assert grant_tier(hub, org_id, "research", granted=False) == []
    assert chat(client, secret, model="research").status_code == 403


def test_set_tier_back_to_open_and_validation(hub: Any) -> None:
    set_tier(hub, "m1", "verified")
    assert list_tiers(hub) == {"m1": "verified"}
    set_tier(hub, "m1", "open")
    assert list_tiers(hub) == {}
    with pytest.raises(InvalidRequest, match="invalid tier"):
        set_tier(hub, "m1", "Bad Tier!")
    from sovhub.accounts import create_org

    org = create_org(hub, "acme")
    with pytest.raises(InvalidRequest, match="follows from verification"):
        grant_tier(hub, org.id, "verified")


def test_cli_set_tier_and_list(settings: Any) -> None:
    from sovhub.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    runner = CliRunner()
    args = ["--data-dir", str(settings.data_dir)]
    r = runner.invoke(cli, [*args, "models", "set-tier", "advanced", "verified"])
    assert r.exit_code == 0, r.output
    assert "tier verified" in r.output
    r = runner.invoke(cli, [*args, "models", "tiers"])
    assert r.output.strip() == "advanced\tverified"
    r = runner.invoke(cli, [*args, "models", "set-tier", "advanced", "no good"])
    assert r.exit_code != 0 and isinstance(r.exception, InvalidRequest)
