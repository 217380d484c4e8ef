"""Encryption at rest: round trips, owner binding, key files, missing/wrong master keys, rotation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from sovhub.errors import ConfigError, NotFound
from sovhub.hub import Hub
from sovhub.sovereignty.crypto import ContentVault, EnvKeyProvider, key_file_path
from sovhub.sovereignty.keys import rotate_master_key
from sovhub.sovereignty.tables import DataKey, SovereigntyMeta
from tests.conftest import reopen_vault

from .conftest import new_hub


def _snapshot(hub: Hub) -> tuple[list[tuple[int, bytes]], str | None]:
    with hub.db.session() as s:
        keys = [(k.id, k.wrapped) for k in s.scalars(select(DataKey).order_by(DataKey.id))]
        check = s.get(SovereigntyMeta, "master_key_check")
    return keys, check.value if check else None


def test_round_trip_and_owner_binding(shub: Hub) -> None:
    vault = shub.services.get(ContentVault)
    blob = vault.encrypt_for_user(1, "Привіт, це таємниця")
    assert "таємниця".encode() not in blob and "Привіт".encode() not in blob
    assert vault.decrypt_for_user(1, blob) == "Привіт, це таємниця"
    other = vault.encrypt_for_user(2, "x")  # gives user 2 a key, so the failure below is about binding
    assert vault.decrypt_for_user(2, other) == "x"
    with pytest.raises(NotFound):
        vault.decrypt_for_user(2, blob)
    with pytest.raises(NotFound):
        vault.decrypt_for_org(1, blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(NotFound, match="failed authentication"):
        vault.decrypt_for_user(1, tampered)
    with pytest.raises(NotFound, match="not a sovhub content blob"):
        vault.decrypt_for_user(1, b"plain")
    org_blob = vault.encrypt_for_org(7, "org data")
    assert vault.decrypt_for_org(7, org_blob) == "org data"


def test_crypto_shredding_makes_old_blobs_unreadable(shub: Hub) -> None:
    vault = shub.services.get(ContentVault)
    blob = vault.encrypt_for_user(5, "to be forgotten")
    assert vault.destroy_key("user", 5)
    with pytest.raises(NotFound, match="destroyed"):
        vault.decrypt_for_user(5, blob)
    # A new key for the same id (e.g. a reused row id) cannot read the old blob either.
    vault.encrypt_for_user(5, "new life")
    with pytest.raises(NotFound):
        vault.decrypt_for_user(5, blob)


def test_key_file_is_created_0600_and_only_once(shub: Hub) -> None:
    path = key_file_path(shub.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert len(base64.b64decode(before)) == 32
    shub.pm.hook.sovhub_init(hub=shub)  # idempotent
    assert path.read_bytes() == before


def test_missing_master_key_refuses_start_and_touches_nothing(data_dir: Path, database_url: str | None) -> None:
    hub = new_hub(data_dir, database_url)
    blob = hub.services.get(ContentVault).encrypt_for_user(1, "kept")
    before = _snapshot(hub)
    key = key_file_path(hub.settings)
    saved = key.read_bytes()
    key.unlink()
    hub.close()

    from sovhub.hub import build_hub
    from tests.conftest import make_settings

    settings = make_settings(data_dir, database_url=database_url, safety={"enabled": False})
    with pytest.raises(ConfigError, match="master key file .* is missing.*no data was touched"):
        build_hub(settings)
    if database_url is None:  # `sovhub serve` reads this data dir's SQLite database
        from tests.server import free_port, run_cli

        result = run_cli(data_dir, "serve", "--port", str(free_port()), check=False,
                         env={"SOVHUB_EMBEDDED_ENABLED": "false", "SOVHUB_SAFETY__ENABLED": "false"})
        assert result.returncode == 1 and "Error: master key file" in result.stderr, result.stderr
    assert not key.exists(), "a new key must not be invented over existing data"
    key.write_bytes(saved)
    os.chmod(key, 0o600)
    hub2 = build_hub(settings)
    assert _snapshot(hub2) == before
    assert hub2.services.get(ContentVault).decrypt_for_user(1, blob) == "kept"
    hub2.close()


def test_wrong_master_key_refuses_start(data_dir: Path, database_url: str | None) -> None:
    hub = new_hub(data_dir, database_url)
    hub.services.get(ContentVault).encrypt_for_org(1, "x")
    before = _snapshot(hub)
    hub.close()
    wrong = base64.b64encode(os.urandom(32)).decode()
    from sovhub.hub import build_hub
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match="wrong master key.*no data was touched"):
        build_hub(make_settings(data_dir, database_url=database_url, safety={"enabled": False},
                                sovereignty={"master_key": wrong}))
    hub2 = new_hub(data_dir, database_url)
    assert _snapshot(hub2) == before
    hub2.close()


@pytest.mark.parametrize("value,message", [("not base64!!", "not valid base64"),
                                           (base64.b64encode(b"short").decode(), "must be 32 bytes")])
def test_bad_env_master_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EnvKeyProvider(value)


def test_key_file_readable_by_others_is_refused(shub: Hub) -> None:
    path = key_file_path(shub.settings)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        reopen_vault(shub)


def test_unknown_key_provider_is_refused(data_dir: Path) -> None:
    from sovhub.hub import build_hub
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match="cannot load key provider"):
        build_hub(make_settings(data_dir, sovereignty={"key_provider": "nosuchmodule:factory"}))


def test_rotate_master_rewraps_without_reencrypting(shub: Hub) -> None:
    vault = shub.services.get(ContentVault)
    blob = vault.encrypt_for_user(3, "survives rotation")
    old_key = key_file_path(shub.settings).read_bytes()
    old_wrapped = _snapshot(shub)[0]
    message = rotate_master_key(shub)
    assert "re-wrapped 1 data keys" in message
    new_key = key_file_path(shub.settings).read_bytes()
    assert new_key != old_key and stat.S_IMODE(key_file_path(shub.settings).stat().st_mode) == 0o600
    assert _snapshot(shub)[0] != old_wrapped
    # A fresh process with the new key file reads the old blob (content was not re-encrypted).
    reopen_vault(shub)
    assert shub.services.get(ContentVault).decrypt_for_user(3, blob) == "survives rotation"
    # The old key no longer opens the database.
    path = key_file_path(shub.settings)
    path.write_bytes(old_key)
    with pytest.raises(ConfigError, match="wrong master key"):
        reopen_vault(shub)


def test_interrupted_rotation_is_finished_at_start(shub: Hub) -> None:
    vault = shub.services.get(ContentVault)
    blob = vault.encrypt_for_user(4, "mid-rotation")
    from sovhub.sovereignty.crypto import FileKeyProvider

    path = key_file_path(shub.settings)
    pending = path.with_name(path.name + ".new")
    FileKeyProvider.create(pending)
    vault.rewrap_all(FileKeyProvider(pending))  # committed, then "crash" before the rename
    reopen_vault(shub)
    assert shub.services.get(ContentVault).decrypt_for_user(4, blob) == "mid-rotation"
    assert not pending.exists()


def test_rotation_interrupted_before_its_commit_leaves_every_row_readable(
        shub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in the middle of the re-wrap: nothing of it is kept, the old key stays, KEY.new goes at start."""
    from sovhub.sovereignty.crypto import FileKeyProvider

    vault = shub.services.get(ContentVault)
    blobs = {uid: vault.encrypt_for_user(uid, f"row {uid}") for uid in range(10, 16)}
    org_blob = vault.encrypt_for_org(3, "org row")
    path = key_file_path(shub.settings)
    old_key, before = path.read_bytes(), _snapshot(shub)
    old_id, real_wrap, wrapped = vault.provider.key_id, FileKeyProvider.wrap, []

    def dies_midway(self: FileKeyProvider, data_key: bytes, aad: bytes) -> bytes:
        if self.key_id != old_id:  # the new key: the check value and two data keys, then the process dies
            wrapped.append(aad)
            if len(wrapped) == 4:
                raise RuntimeError("killed mid-rotation")
        return real_wrap(self, data_key, aad)

    monkeypatch.setattr(FileKeyProvider, "wrap", dies_midway)
    with pytest.raises(RuntimeError, match="killed mid-rotation"):
        rotate_master_key(shub)
    monkeypatch.undo()
    assert len(wrapped) == 4  # the failure really was inside the re-wrap, with rows already re-wrapped
    pending = path.with_name(path.name + ".new")
    assert pending.exists() and path.read_bytes() == old_key
    assert _snapshot(shub) == before  # rolled back: every data key and the check are as they were
    # The running process still reads and writes under the old key.
    assert vault.decrypt_for_user(10, blobs[10]) == "row 10"
    late = vault.encrypt_for_user(20, "written after the failed rotation")
    # A restart discards the uncommitted KEY.new and reads every row.
    reopen_vault(shub)
    assert not pending.exists() and path.read_bytes() == old_key
    restarted = shub.services.get(ContentVault)
    assert {uid: restarted.decrypt_for_user(uid, blob) for uid, blob in blobs.items()} == \
        {uid: f"row {uid}" for uid in blobs}
    assert restarted.decrypt_for_org(3, org_blob) == "org row"
    assert restarted.decrypt_for_user(20, late) == "written after the failed rotation"
    # And the next rotation goes through.
    assert f"re-wrapped {len(blobs) + 2} data keys" in rotate_master_key(shub)
    reopen_vault(shub)
    assert shub.services.get(ContentVault).decrypt_for_user(15, blobs[15]) == "row 15"


def test_vault_is_a_content_vault(shub: Hub) -> None:
    assert isinstance(shub.services.get(ContentVault), ContentVault)
