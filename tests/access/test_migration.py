"""Migration 0004: creates exactly the access tables of the models, and downgrades cleanly (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sovhub.store.base import Base
from sovhub.store.db import Database, import_table_modules
from tests.conftest import make_settings

ACCESS_TABLES = {"access_identities", "access_oidc_transactions", "access_verifications", "access_org_profiles",
                 "access_model_tiers"}


def _access_diffs(db: Database) -> list[object]:
    import_table_modules()
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)

    def touches_access(diff: object) -> bool:
        return "access_" in repr(diff)

    return [d for d in diffs if touches_access(d)]


def test_upgrade_matches_models_and_downgrade_removes(database_url: str | None, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_settings(data_dir, database_url=database_url).resolved_database_url)
    try:
        db.migrate()
        assert ACCESS_TABLES <= set(db.table_names())
        assert _access_diffs(db) == []
        command.downgrade(db.alembic_config(), "0003")
        assert not ACCESS_TABLES & set(db.table_names())
        command.upgrade(db.alembic_config(), "0004")
        assert ACCESS_TABLES <= set(db.table_names())
    finally:
        db.dispose()
