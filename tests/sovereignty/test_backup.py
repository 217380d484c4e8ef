"""`sovhub backup` and `sovhub restore` onto a fresh instance: the audit verifies, content decrypts, and every
erased person stays erased, including those erased after the backup (the erasure journal is re-applied)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sovhub.accounts import create_org
from sovhub.assistant.tables import Conversation
from sovhub.errors import ConfigError, InvalidRequest, NotFound
from sovhub.hub import Hub
from sovhub.sovereignty.audit import verify
from sovhub.sovereignty.backup import backup, restore
from sovhub.sovereignty.crypto import ContentVault, key_store_path
from sovhub.sovereignty.erasures import journal_path, read_journal
from sovhub.sovereignty.rights import erase_user
from sovhub.sovereignty.tables import AuditEntry
from sovhub.store.dump import dump_tables, sha256_file
from sovhub.store.tables import User
from tests.conftest import _drop_schema, _pg_schema_url, make_settings, postgres_url, run_cli

from .conftest import add_user, new_hub


@pytest.fixture
def fresh_database_url(database_url: str | None) -> Iterator[str | None]:
    """A second, empty database of the same kind, for the instance restored onto."""
    if database_url is None:
        yield None
        return
    base = postgres_url()
    assert base is not None
    url, schema = _pg_schema_url(base)
    yield url
    _drop_schema(base, schema)


def _store_title(hub: Hub, uid: int, text: str) -> str:
    cid = f"{uid:032d}"
    with hub.db.session() as s:
        s.add(Conversation(id=cid, user_id=uid, title=hub.services.get(ContentVault).encrypt_for_user(uid, text), model="echo"))
    return cid


def _everything(hub: Hub) -> str:
    out = io.BytesIO()
    dump_tables(hub.db, out)
    return gzip.decompress(out.getvalue()).decode("utf-8")


def _target(tmp_path: Path, url: str | None):
    return make_settings(tmp_path / "restored", database_url=url, safety={"enabled": False})


def test_restore_onto_a_fresh_instance_reapplies_erasures_made_after_the_backup(
        database_url, fresh_database_url, tmp_path) -> None:
    hub = new_hub(tmp_path / "live", database_url)
    olena, petro, ivan = (add_user(hub, f"{n}@example.ua") for n in ("olena", "petro", "ivan"))
    create_org(hub, "ministry-lab")
    titles = {uid: _store_title(hub, uid, f"{uid}'s question") for uid in (olena, petro, ivan)}
    erase_user(hub, ivan)  # before the backup
    made = backup(hub, tmp_path / "media-a", tmp_path / "custodian-b")
    erase_user(hub, olena, actor=f"user:{olena}")  # after it: only the live journal knows
    assert [e.user_id for e in read_journal(journal_path(hub.settings))] == [ivan, olena]
    shipped = tmp_path / "off-host" / "erasures.jsonl"
    shipped.parent.mkdir()
    shutil.copy(journal_path(hub.settings), shipped)  # shipped off the host, as the docs ask
    hub.close()
    assert not list(made.database_dir.glob("*.kek")) and not (made.database_dir / "master.key").exists()
    assert (made.keys_dir / "master.key").is_file() and (made.keys_dir / f"keystore/user-{olena}.kek").is_file()

    result = restore(_target(tmp_path, fresh_database_url), made.database_dir, made.keys_dir, journals=[shipped])
    assert result.erasures_reapplied == [olena] and result.journal_entries == 2

    restored = new_hub(tmp_path / "restored", fresh_database_url)
    try:
        checked, problem = verify(restored)
        assert problem is None and checked > result.audit_entries  # intact, and the restore itself is recorded
        with restored.db.session() as s:
            conv = s.get(Conversation, titles[petro])
            assert conv is not None
            assert restored.services.get(ContentVault).decrypt_for_user(petro, conv.title) == f"{petro}'s question"
            assert s.get(User, olena) is None and s.get(User, ivan) is None
            assert s.get(Conversation, titles[olena]) is None and s.get(Conversation, titles[ivan]) is None
            events = [e for e, in s.execute(select(AuditEntry.event).where(AuditEntry.subject == f"user:{olena}"))]
        assert "user.erasure_reapplied" in events
        assert not (key_store_path(restored.settings) / f"user-{olena}.kek").exists()
        everything = _everything(restored)
        assert "olena@example.ua" not in everything and "ivan@example.ua" not in everything
        assert "petro@example.ua" in everything
        newcomer = add_user(restored, "newcomer@example.ua")
        assert newcomer > olena, "an erased person's id is never handed out again"
        with pytest.raises(NotFound):
            restored.services.get(ContentVault).decrypt_for_user(olena, b"\x01" + b"\x00" * 40)
    finally:
        restored.close()


def test_backup_and_restore_from_the_command_line(data_dir, tmp_path, capsys) -> None:
    hub = new_hub(data_dir, None)
    uid = add_user(hub, "olena@example.ua")
    cid = _store_title(hub, uid, "kept")
    hub.close()
    assert run_cli(data_dir, "backup", "--database-to", str(tmp_path / "a"), "--keys-to", str(tmp_path / "b")) == 0
    assert "backup " in capsys.readouterr().out
    db_half, = (tmp_path / "a").iterdir()
    keys_half, = (tmp_path / "b").iterdir()
    target = tmp_path / "restored"
    assert run_cli(target, "restore", "--database-from", str(db_half), "--keys-from", str(keys_half)) == 0
    assert "audit chain intact" in capsys.readouterr().out
    restored = new_hub(target, None)
    try:
        with restored.db.session() as s:
            row = s.get(Conversation, cid)
        assert row is not None and restored.services.get(ContentVault).decrypt_for_user(uid, row.title) == "kept"
    finally:
        restored.close()
    # A second restore onto the now-used instance is refused, naming why.
    assert run_cli(target, "restore", "--database-from", str(db_half), "--keys-from", str(keys_half)) == 1
    assert "fresh database" in capsys.readouterr().err


def test_the_two_halves_must_go_to_two_places(shub, tmp_path) -> None:
    with pytest.raises(InvalidRequest, match="two places"):
        backup(shub, tmp_path / "same", tmp_path / "same")
    with pytest.raises(InvalidRequest, match="two places"):
        backup(shub, tmp_path / "outer", tmp_path / "outer" / "inner")
    assert not (tmp_path / "same").exists() and not (tmp_path / "outer").exists()


@pytest.fixture
def made(data_dir, tmp_path):
    hub = new_hub(data_dir, None)
    add_user(hub, "petro@example.ua")
    create_org(hub, "acme")
    result = backup(hub, tmp_path / "a", tmp_path / "b")
    hub.close()
    return result


def test_a_damaged_or_altered_dump_is_refused_and_nothing_restored(made, tmp_path) -> None:
    dump = made.database_dir / "database.jsonl.gz"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    target = _target(tmp_path, None)
    with pytest.raises(ConfigError, match="does not match the backup's manifest"):
        restore(target, made.database_dir, made.keys_dir)
    assert not key_store_path(target).exists() and not (target.data_dir / "master.key").exists()
    assert not (target.data_dir / "sovhub.db").exists()


def test_an_audit_entry_rewritten_with_a_matching_manifest_is_caught(made, tmp_path) -> None:
    dump = made.database_dir / "database.jsonl.gz"
    lines = gzip.decompress(dump.read_bytes()).decode().splitlines()
    forged, changed = [], 0
    for line in lines:
        record = json.loads(line)
        if record["t"] == AuditEntry.__tablename__ and record["r"]["event"]["v"] == "org.created":
            record["r"]["subject"] = {"v": "org:someone-else"}
            changed += 1
        forged.append(json.dumps(record))
    assert changed == 1
    dump.write_bytes(gzip.compress(("\n".join(forged) + "\n").encode()))
    manifest = json.loads((made.database_dir / "manifest.json").read_text())
    manifest["files"]["database.jsonl.gz"] = sha256_file(dump)
    (made.database_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="audit chain is broken"):
        restore(_target(tmp_path, None), made.database_dir, made.keys_dir)


def test_a_key_half_older_than_the_database_half_is_refused(made, tmp_path) -> None:
    manifest = json.loads((made.keys_dir / "manifest.json").read_text())
    manifest["created_at"] = "2000-01-01T00:00:00+00:00"
    (made.keys_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="older than the database half"):
        restore(_target(tmp_path, None), made.database_dir, made.keys_dir)


def test_restore_never_overwrites_a_key_in_place(made, tmp_path) -> None:
    target = _target(tmp_path, None)
    target.data_dir.mkdir(parents=True)
    (target.data_dir / "master.key").write_text("c29tZW9uZSBlbHNlJ3Mga2V5IG9mIDMyIGJ5dGVzISE=\n")
    with pytest.raises(ConfigError, match="restore never overwrites a key"):
        restore(target, made.database_dir, made.keys_dir)
    assert (target.data_dir / "master.key").read_text().startswith("c29tZW9uZSBlbHNl")


def test_a_journal_that_cannot_be_written_stops_the_erasure_before_it_starts(shub, tmp_path) -> None:
    uid = add_user(shub, "olena@example.ua")
    cid = _store_title(shub, uid, "still here")
    blocker = journal_path(shub.settings)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.mkdir()  # a directory where the journal file should be: the append fails
    with pytest.raises(ConfigError, match="cannot record the erasure"):
        erase_user(shub, uid)
    with shub.db.session() as s:
        row = s.get(Conversation, cid)
    assert row is not None and shub.services.get(ContentVault).decrypt_for_user(uid, row.title) == "still here"



def test_a_key_half_of_another_hub_is_refused_before_anything_is_written(made, data_dir, tmp_path) -> None:
    other = new_hub(tmp_path / "other", None)
    add_user(other, "someone@example.ua")
    _store_title(other, 1, "x")
    theirs = backup(other, tmp_path / "oa", tmp_path / "ob")
    other.close()
    target = _target(tmp_path, None)
    with pytest.raises(ConfigError, match="does not open this database backup"):
        restore(target, made.database_dir, theirs.keys_dir)
    assert not (target.data_dir / "sovhub.db").exists() and not key_store_path(target).exists()
