"""Per-owner key-encryption keys outside the database: an erasure survives restoring a backup."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from sovhub.assistant.tables import Conversation
from sovhub.errors import ConfigError, NotFound
from sovhub.hub import Hub
from sovhub.sovereignty.crypto import ContentVault, key_store_path
from sovhub.sovereignty.rights import erase_user
from sovhub.sovereignty.tables import DataKey, SovereigntyMeta
from tests.conftest import reopen_vault

from .conftest import add_user, new_hub


def _store_title(hub: Hub, uid: int, text: str) -> str:
    blob = hub.services.get(ContentVault).encrypt_for_user(uid, text)
    cid = f"{uid:032d}"
    with hub.db.session() as s:
        s.add(Conversation(id=cid, user_id=uid, title=blob, model="echo"))
    return cid


def _title(hub: Hub, uid: int, cid: str) -> str:
    with hub.db.session() as s:
        row = s.get(Conversation, cid)
    assert row is not None
    return hub.services.get(ContentVault).decrypt_for_user(uid, row.title)


def _db_file(hub: Hub) -> Path:
    database = hub.db.engine.url.database
    assert database
    return Path(database)


def test_restoring_a_backup_taken_before_an_erasure_does_not_make_content_readable(data_dir: Path) -> None:
    hub = new_hub(data_dir, None)
    olena, petro = add_user(hub, "olena@example.ua"), add_user(hub, "petro@example.ua")
    erased_cid, kept_cid = _store_title(hub, olena, "olena's secret"), _store_title(hub, petro, "petro's note")
    db = _db_file(hub)
    backup = data_dir / "backup.db"
    with sqlite3.connect(db) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)  # what `sqlite3 hub.db ".backup backup.db"` writes
    erase_user(hub, olena)
    assert not (key_store_path(hub.settings) / f"user-{olena}.kek").exists()
    hub.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(backup, db)  # the restore

    restored = new_hub(data_dir, None)  # same master key, same key store: the current keys
    try:
        with restored.db.session() as s:  # the backup did bring the rows and the wrapped data key back
            assert s.get(Conversation, erased_cid) is not None
            assert s.scalar(select(DataKey).where(DataKey.owner_kind == "user", DataKey.owner_id == olena))
        with pytest.raises(NotFound, match="destroyed"):
            _title(restored, olena, erased_cid)
        assert _title(restored, petro, kept_cid) == "petro's note"  # the backup itself is sound
    finally:
        restored.close()


def test_kek_files_are_private_and_a_readable_one_is_refused(shub: Hub) -> None:
    uid = add_user(shub, "olena@example.ua")
    cid = _store_title(shub, uid, "t")
    path = key_store_path(shub.settings) / f"user-{uid}.kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    reopen_vault(shub)
    with pytest.raises(ConfigError, match="accessible by others"):
        _title(shub, uid, cid)


def test_the_database_alone_does_not_open_content(shub: Hub) -> None:
    """The master key plus the database are not enough: the KEK is a second, separate secret."""
    uid = add_user(shub, "olena@example.ua")
    cid = _store_title(shub, uid, "t")
    (key_store_path(shub.settings) / f"user-{uid}.kek").unlink()
    reopen_vault(shub)
    with pytest.raises(NotFound, match="destroyed"):
        _title(shub, uid, cid)
    # New content of that person gets a fresh key; the old stays unreadable.
    assert shub.services.get(ContentVault).decrypt_for_user(uid, shub.services.get(ContentVault).encrypt_for_user(uid, "new")) == "new"
    with pytest.raises(NotFound):
        _title(shub, uid, cid)


def test_data_keys_from_before_the_kek_layer_are_moved_under_one(shub: Hub) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    vault = shub.services.get(ContentVault)
    uid = add_user(shub, "olena@example.ua")
    key = AESGCM.generate_key(bit_length=256)
    with shub.db.session() as s:  # a data key as the previous version stored it: wrapped by the master key only
        s.add(DataKey(owner_kind="user", owner_id=uid, wrapped=vault.provider.wrap(key, f"sovhub:user:{uid}".encode()),
                      master_key_id=vault.provider.key_id))
        s.execute(delete(SovereigntyMeta).where(SovereigntyMeta.name == "kek_layer_v1"))
    blob = vault.encrypt_for_user(uid, "from before")
    reopen_vault(shub)
    assert shub.services.get(ContentVault).decrypt_for_user(uid, blob) == "from before"  # moved at start, still readable
    with shub.db.session() as s:
        row = s.scalar(select(DataKey).where(DataKey.owner_id == uid))
        assert row is not None and len(vault.provider.unwrap(row.wrapped, f"sovhub:user:{uid}".encode())) != 32
    assert (key_store_path(shub.settings) / f"user-{uid}.kek").exists()
    fresh = ContentVault(shub, vault.provider)  # another process: the database says it was done
    assert fresh.seal_legacy_keys() == 0
