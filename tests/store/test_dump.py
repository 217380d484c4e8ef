"""The dialect-neutral dump: a backup taken at an older migration loads at that migration and is then migrated,
and a SQLite hub's dump loads into PostgreSQL (rows, JSON, bytes and times unchanged)."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from sqlalchemy import select

from sovhub.accounts import create_key, create_org
from sovhub.hub import build_hub
from sovhub.store.db import Database
from sovhub.store.dump import dump_tables, load_tables
from sovhub.store.tables import ApiKey, Organization
from tests.conftest import make_settings


def test_a_dump_from_an_older_migration_loads_there_and_migrates_to_head(database_url, tmp_path: Path) -> None:
    source = build_hub(make_settings(tmp_path / "old"))  # SQLite, whatever the target is
    create_org(source, "ministry-lab")
    key = create_key(source, "ministry-lab", limits={"rpm": 7})
    with source.db.session() as s:
        before = s.scalar(select(ApiKey).where(ApiKey.prefix == key.prefix))
        assert before is not None
        secret_hash, created = before.secret_hash, before.created_at
    head = source.db.head_revision()
    command.downgrade(source.db.alembic_config(), "0010")  # as the hub of an earlier release left it
    out = io.BytesIO()
    counts, revision, facts = dump_tables(source.db, out)
    source.close()
    assert revision == "0010" and counts["organizations"] == 1 and counts["api_keys"] == 1
    dump = tmp_path / "dump.jsonl.gz"
    dump.write_bytes(out.getvalue())

    (tmp_path / "new").mkdir()
    target = Database(make_settings(tmp_path / "new", database_url=database_url).resolved_database_url)
    try:
        command.upgrade(target.alembic_config(), "0010")
        loaded = load_tables(target, dump)
        assert loaded == {k: v for k, v in counts.items() if v}
        target.migrate()
        assert target.current_revision() == head
        with target.session() as s:
            org = s.scalar(select(Organization).where(Organization.name == "ministry-lab"))
            row = s.scalar(select(ApiKey).where(ApiKey.prefix == key.prefix))
        assert org is not None and row is not None
        assert row.secret_hash == secret_hash and row.limits == {"rpm": 7}
        assert abs((row.created_at.replace(tzinfo=None) - created.replace(tzinfo=None)).total_seconds()) < 1e-3
    finally:
        target.dispose()
