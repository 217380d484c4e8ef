"""Usage by day, model and key (JSON and CSV), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from sovhub.access.usage import usage_csv, usage_summary
from sovhub.accounts import create_key, create_org
from sovhub.errors import InvalidRequest
from sovhub.hub import build_hub
from sovhub.store.base import utcnow
from sovhub.store.tables import UsageRecord
from tests.conftest import make_settings

from .conftest import access_plugin_manager, bearer, org_with_key


def _record(org_id: int, key_id: int | None, model: str, days_ago: int, p: int, c: int) -> dict[str, Any]:
    return {"ts": utcnow() - timedelta(days=days_ago), "request_id": "r", "org_id": org_id, "key_id": key_id,
            "endpoint": "chat", "model": model, "prompt_tokens": p, "completion_tokens": c, "latency_ms": 1.0,
            "status": 200}


def _seed(hub: Any) -> tuple[int, int, int, int]:
    a, b = create_org(hub, "acme"), create_org(hub, "globex")
    ka1, ka2 = create_key(hub, "acme", name="web"), create_key(hub, "acme", name="=cmd()")
    kb = create_key(hub, "globex")
    with hub.db.session() as s:
        s.execute(insert(UsageRecord), [
            _record(a.id, ka1.id, "echo", 0, 10, 5), _record(a.id, ka1.id, "echo", 0, 1, 1),
            _record(a.id, ka2.id, "echo", 0, 2, 2), _record(a.id, ka1.id, "advanced", 1, 3, 3),
            _record(a.id, ka1.id, "echo", 40, 100, 100), _record(b.id, kb.id, "echo", 0, 7, 7),
        ])
    return a.id, b.id, ka1.id, ka2.id


def test_summary_groups_by_day_model_key(database_url: str | None, data_dir: Path) -> None:
    hub = build_hub(make_settings(data_dir, database_url=database_url), pm=access_plugin_manager())
    try:
        a, b, _, _ = _seed(hub)
        rows = usage_summary(hub, a, 30)
        today = utcnow().date().isoformat()
        yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
        keyed = {(r["date"], r["model"], r["key_name"]): r for r in rows}
        assert len(rows) == 3  # the 40-day-old record is outside the window
        web = keyed[(today, "echo", "web")]
        assert (web["requests"], web["prompt_tokens"], web["completion_tokens"], web["total_tokens"]) == (2, 11, 6, 17)
        assert keyed[(yesterday, "advanced", "web")]["total_tokens"] == 6
        assert rows[0]["date"] == today and rows[-1]["date"] == yesterday  # newest first
        assert sum(r["total_tokens"] for r in usage_summary(hub, b, 30)) == 14
        assert len(usage_summary(hub, a, 60)) == 4
        with pytest.raises(InvalidRequest):
            usage_summary(hub, a, 0)
    finally:
        hub.close()


def test_usage_endpoint_json_and_csv_only_own_org(make_app: Any) -> None:
    hub, client = make_app()
    a, b, _, _ = _seed(hub)
    secret_a = create_key(hub, "acme").secret
    body = client.get("/hub/v1/organization/usage?days=7", headers=bearer(secret_a)).json()
    assert body["organization"] == "acme" and body["days"] == 7
    assert sum(r["total_tokens"] for r in body["data"]) == 17 + 4 + 6
    r = client.get("/hub/v1/organization/usage?format=csv", headers=bearer(secret_a))
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["key_name"] for row in table} == {"web", "'=cmd()"}  # formula injection defused
    assert client.get("/hub/v1/organization/usage?days=0", headers=bearer(secret_a)).status_code == 400
    assert client.get("/hub/v1/organization/usage?format=xml", headers=bearer(secret_a)).status_code == 400


def test_usage_csv_empty_has_header() -> None:
    assert usage_csv([]).splitlines() == [
        "date,model,key_prefix,key_name,requests,prompt_tokens,completion_tokens,total_tokens,energy_wh,co2e_g,"
        "renewable_share,sci_g_per_1k_tokens"
    ]


def test_limits_endpoint(make_app: Any) -> None:
    hub, client = make_app(tier_limits={"verified": {"rpm": 5}})
    _, secret, _ = org_with_key(hub, "acme", rpm=3, tpd=100)
    from sovhub.access.tiers import set_tier

    set_tier(hub, "advanced", "verified")
    body = client.get("/hub/v1/organization/limits", headers=bearer(secret)).json()
    assert {(x["scope"], x["field"], x["value"]) for x in body["limits"]} == {("key", "rpm", 3), ("key", "tpd", 100)}
    body = client.get("/hub/v1/organization/limits?model=advanced", headers=bearer(secret)).json()
    assert body["tier"] == "verified" and ("tier", "rpm", 5) in {(x["scope"], x["field"], x["value"])
                                                                  for x in body["limits"]}
