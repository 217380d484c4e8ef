"""Migrating an empty database to head gives exactly the schema the table modules declare."""

from __future__ import annotations

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
