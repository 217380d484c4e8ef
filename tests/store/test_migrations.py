"""Migrating an empty database to head gives exactly the schema the table modules declare."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sovhub.store.base import Base
from sovhub.store.db import Database, import_table_modules
from tests.conftest import make_settings


def test_empty_database_migrates_to_head_matching_models(database_url, data_dir) -> None:
    settings = make_settings(data_dir, database_url=database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    db.migrate()
    db.migrate()  # idempotent
    import_table_modules()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    # FTS virtual tables and their shadow tables are created by migrations on purpose, outside the models.
    diff = [d for d in diff if not (d[0] == "remove_table" and "fts" in d[1].name)]
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {"organizations", "api_keys", "backends", "usage_records", "users"} <= set(db.table_names())
    assert db.current_revision() is not None
    db.dispose()


def test_core_storage_round_trip(database_url, data_dir) -> None:
    from sovhub.accounts import authenticate, create_key, create_org, revoke_key
    from sovhub.errors import AuthenticationFailed
    from sovhub.hub import build_hub

    hub = build_hub(make_settings(data_dir, database_url=database_url))
    create_org(hub, "acme")
    key = create_key(hub, "acme", limits={"rpm": 5})
    principal = authenticate(hub, key.secret)
    assert principal.org_name == "acme" and principal.limits == {"rpm": 5}
    revoke_key(hub, key.prefix)
    try:
        authenticate(hub, key.secret)
        raise AssertionError("revoked key authenticated")
    except AuthenticationFailed as exc:
        assert exc.code == "revoked_api_key"
    hub.close()


def test_0008_makes_existing_keys_inference_only_and_claims_registry_numbers(database_url, data_dir) -> None:
    from alembic import command
    from sqlalchemy import text

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_settings(data_dir, database_url=database_url).resolved_database_url)
    try:
        command.upgrade(db.alembic_config(), "0005")
        now = "2026-01-01 00:00:00+00:00"
        with db.engine.begin() as conn:
            for org_id in (1, 2, 3):
                conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES (:i, :n, :t)"),
                             {"i": org_id, "n": f"org{org_id}", "t": now})
                conn.execute(text(
                    "INSERT INTO api_keys (id, org_id, prefix, secret_hash, limits, created_at) "
                    "VALUES (:i, :i, :p, 'h', '{}', :t)"), {"i": org_id, "p": f"sk-sov-k{org_id}", "t": now})
                conn.execute(text(
                    "INSERT INTO access_verifications (id, org_id, status, country, registry_number, legal_name, "
                    "requested_by, registry_result, problems, created_at, updated_at) "
                    "VALUES (:i, :i, 'approved', 'ua', :n, 'x', 't', '{}', '[]', :t, :t)"),
                    # orgs 1 and 2 were both verified with one number (written two ways): 1 was first
                    {"i": org_id, "n": {1: "123-45", 2: "12345", 3: "999"}[org_id], "t": now})
                conn.execute(text(
                    "INSERT INTO access_org_profiles (org_id, verified_at, verification_id, limits, tiers, updated_at) "
                    "VALUES (:i, :v, :i, '{}', '[]', :t)"),
                    {"i": org_id, "v": f"2026-01-0{org_id} 00:00:00+00:00", "t": now})
        command.upgrade(db.alembic_config(), "head")
        with db.engine.connect() as conn:
            scopes = conn.execute(text("SELECT scopes, parent_key_id, expires_at FROM api_keys")).all()
            claims = dict(conn.execute(text(
                "SELECT org_id, registry_country || ':' || registry_number FROM access_org_profiles")).all())
        assert [json.loads(s) if isinstance(s, str) else s for s, _, _ in scopes] == [["inference"]] * 3
        assert {p for _, p, _ in scopes} == {None} and {e for _, _, e in scopes} == {None}
        assert claims == {1: "UA:12345", 2: None, 3: "UA:999"}
        command.downgrade(db.alembic_config(), "0005")
        command.upgrade(db.alembic_config(), "head")
    finally:
        db.dispose()


def test_0019_leaves_every_existing_key_unbound_and_downgrades(database_url, data_dir) -> None:
    from alembic import command
    from sqlalchemy import inspect, text

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_settings(data_dir, database_url=database_url).resolved_database_url)
    try:
        command.upgrade(db.alembic_config(), "0017")
        now = "2026-01-01 00:00:00+00:00"
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES (1, 'org1', :t)"), {"t": now})
            conn.execute(text("INSERT INTO api_keys (id, org_id, prefix, secret_hash, limits, scopes, created_at) "
                              "VALUES (1, 1, 'sk-sov-k1', 'h', '{}', '[\"inference\", \"admin\"]', :t)"), {"t": now})
        command.upgrade(db.alembic_config(), "0019")
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT prefix, scopes, staff_user_id FROM api_keys")).all()
        assert [(p, json.loads(s) if isinstance(s, str) else s, u) for p, s, u in rows] == [
            ("sk-sov-k1", ["inference", "admin"], None)]
        command.downgrade(db.alembic_config(), "0017")
        assert "staff_user_id" not in {c["name"] for c in inspect(db.engine).get_columns("api_keys")}
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT prefix FROM api_keys")).scalars().all() == ["sk-sov-k1"]
        command.upgrade(db.alembic_config(), "head")
    finally:
        db.dispose()
