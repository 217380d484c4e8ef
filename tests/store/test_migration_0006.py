"""Migration 0006: AUTOINCREMENT on SQLite without losing linked rows, e-mails normalised, clashes refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from sovhub.errors import ConfigError
from sovhub.store.db import Database
from tests.conftest import make_settings

REBUILT = ("organizations", "users", "api_keys", "access_identities", "access_verifications",
           "content_access_requests", "kb_collections", "assistant_messages", "safety_policy_versions")


def _at_0005(database_url: str | None, data_dir: Path) -> Database:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_settings(data_dir, database_url=database_url).resolved_database_url)
    command.upgrade(db.alembic_config(), "0005")
    return db


def _seed(db: Database) -> None:
    with db.engine.begin() as conn:
        now = "2026-01-01 00:00:00"
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES (1, 'acme', :t)"), {"t": now})
        for uid, email in ((1, "Alice@X.org"), (2, "ÅSA@x.org"), (3, "ＢＯＢ＠ｘ.ｏｒｇ")):
            conn.execute(text("INSERT INTO users (id, email, is_staff, created_at) VALUES (:i, :e, false, :t)"),
                         {"i": uid, "e": email, "t": now})
        if conn.dialect.name == "postgresql":  # explicit ids leave the sequence behind; the app never gives them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), 7)"))
        conn.execute(text("INSERT INTO memberships (user_id, org_id, role) VALUES (1, 1, 'owner')"))
        conn.execute(text("INSERT INTO access_identities (idp, subject, user_id, created_at) "
                          "VALUES ('test', 'sub-1', 2, :t)"), {"t": now})
        # Person 7 was erased before the upgrade; the usage row and the audit subject remember them.
        conn.execute(text("INSERT INTO usage_records (ts, request_id, user_id, endpoint, model, prompt_tokens, "
                          "completion_tokens, latency_ms, status) VALUES (:t, 'r1', 5, 'chat', 'm', 0, 0, 0, 200)"),
                     {"t": now})
        conn.execute(text("INSERT INTO audit_log (seq, ts, event, actor, subject, data, prev_hash, hash) "
                          "VALUES (1, :t, 'user.erased', 'cli', 'user:7', '{}', '', 'h')"), {"t": now})


def test_upgrade_keeps_linked_rows_normalises_emails_and_never_reuses_ids(
    database_url: str | None, data_dir: Path
) -> None:
    db = _at_0005(database_url, data_dir)
    try:
        _seed(db)
        db.migrate()
        with db.engine.connect() as conn:
            emails = dict(conn.execute(text("SELECT id, email FROM users")).all())
            assert emails == {1: "alice@x.org", 2: "åsa@x.org", 3: "bob@x.org"}
            # The rebuild must not have cascaded: DROP TABLE with foreign keys on deletes child rows.
            assert conn.execute(text("SELECT COUNT(*) FROM memberships")).scalar_one() == 1
            assert conn.execute(text("SELECT user_id FROM access_identities")).scalar_one() == 2
            if db.is_sqlite:
                for table in REBUILT:
                    sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type='table' AND name=:n"),
                                       {"n": table}).scalar_one()
                    assert "AUTOINCREMENT" in sql, table
                assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (email, is_staff, created_at) VALUES ('new@x.org', false, :t)"),
                         {"t": "2026-02-01 00:00:00"})
            new_id = conn.execute(text("SELECT id FROM users WHERE email = 'new@x.org'")).scalar_one()
        assert new_id == 8  # above the erased person 7, who appears only in the audit log
    finally:
        db.dispose()


def test_upgrade_refuses_two_accounts_that_become_one_address(database_url: str | None, data_dir: Path) -> None:
    db = _at_0005(database_url, data_dir)
    try:
        with db.engine.begin() as conn:
            for uid, email in ((1, "Carol@x.org"), (2, "carol@X.ORG"), (3, "dave@x.org")):
                conn.execute(text("INSERT INTO users (id, email, is_staff, created_at) VALUES (:i, :e, false, :t)"),
                             {"i": uid, "e": email, "t": "2026-01-01 00:00:00"})
        with pytest.raises(ConfigError) as caught:
            db.migrate()
        message = caught.value.message
        assert "'carol@x.org'" in message and "user 1 'Carol@x.org'" in message and "user 2 'carol@X.ORG'" in message
        assert "dave" not in message
        assert db.current_revision() == "0005"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT email FROM users WHERE id = 1")).scalar_one() == "Carol@x.org"
            if db.is_sqlite:
                assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        db.dispose()
