"""Migration 0003: the safety tables exist at head and go away on downgrade (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from sovhub.hub import build_hub
from tests.conftest import make_settings

TABLES = {"safety_policy_versions", "moderation_log", "safety_appeals"}


def test_upgrade_and_downgrade(data_dir: Path, database_url: str | None) -> None:
    settings = make_settings(data_dir, database_url=database_url)
    hub = build_hub(settings)
    try:
        engine = create_engine(settings.resolved_database_url)
        inspector = inspect(engine)
        assert TABLES <= set(inspector.get_table_names())
        columns = {c["name"] for c in inspector.get_columns("moderation_log")}
        assert {"categories", "policy_version", "action", "lang", "principal", "content"} <= columns
        fks = inspector.get_foreign_keys("safety_appeals")
        assert [fk["referred_table"] for fk in fks] == ["moderation_log"]
        engine.dispose()

        from alembic import command

        config = hub.db.alembic_config()
        command.downgrade(config, "0002")
        engine = create_engine(settings.resolved_database_url)
        assert not TABLES & set(inspect(engine).get_table_names())
        engine.dispose()
        command.upgrade(config, "head")
        assert TABLES <= set(hub.db.table_names())
    finally:
        hub.close()
