"""Master-key rotation while a hub serves: no data key is wrapped under the retired key.

The serving hub and the rotating one (`sovhub keys rotate-master` in another process) are two
Hub objects over the same data dir and database, each with its own vault, as two processes are.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from sovhub.assistant.tables import Conversation
from sovhub.errors import ConfigError
from sovhub.hub import Hub
from sovhub.sovereignty.crypto import ContentVault, FileKeyProvider, key_file_path
from sovhub.sovereignty.keys import rotate_master_key
from sovhub.sovereignty.tables import DataKey
from tests.conftest import reopen_vault

from .conftest import add_user, new_hub

WRITES_MAX = 150


def _write(hub: Hub, uid: int, text: str) -> None:
    blob = hub.services.get(ContentVault).encrypt_for_user(uid, text)
    with hub.db.session() as s:
        s.add(Conversation(id=f"{uid:016d}{len(text):016d}", user_id=uid, title=blob, model="echo"))


def test_rotate_under_load_then_restart_reads_everything(data_dir: Path, database_url: str | None) -> None:
    serving = new_hub(data_dir, database_url)
    written: dict[str, str] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:  # new people (new data keys) keep arriving while the key rotates
        try:
            for i in range(WRITES_MAX):
                if stop.is_set():
                    return
                uid = add_user(serving, f"person{i}@example.ua")
                text = f"secret {i}"
                _write(serving, uid, text)
                written[f"{uid:016d}{len(text):016d}"] = text
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    rotator = new_hub(data_dir, database_url)
    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        key_ids = []
        for _ in range(2):  # two rotations, each with writes before and after it
            target = len(written) + 5
            while len(written) < target and worker.is_alive():
                time.sleep(0.01)
            rotate_master_key(rotator)
            key_ids.append(rotator.services.get(ContentVault).provider.key_id)
        target = len(written) + 5
        while len(written) < target and worker.is_alive():
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(timeout=120)
        rotator.close()
        serving.close()
    assert errors == []
    assert len(written) >= 15
    assert key_ids[0] != key_ids[1]

    restarted = new_hub(data_dir, database_url)  # a fresh process: only the current key file
    try:
        vault = restarted.services.get(ContentVault)
        assert vault.provider.key_id == key_ids[-1]
        with restarted.db.session() as s:
            assert {k.master_key_id for k in s.scalars(select(DataKey))} == {key_ids[-1]}
            rows = {c.id: c for c in s.scalars(select(Conversation))}
        for cid, text in written.items():
            assert vault.decrypt_for_user(rows[cid].user_id, rows[cid].title) == text
    finally:
        restarted.close()


def test_a_serving_hub_follows_a_rotation_caught_between_commit_and_rename(shub: Hub, data_dir: Path) -> None:
    """Mid-rotation the database is under KEY.new while KEY is still the old file: both are tried."""
    # A second process on the same database and data dir (the key files are what the rename moves).
    url = None if shub.db.is_sqlite else shub.db.engine.url.render_as_string(hide_password=False)
    rotator = new_hub(data_dir, url)
    try:
        serving_vault = shub.services.get(ContentVault)
        old_id = serving_vault.provider.key_id
        path = key_file_path(shub.settings)
        pending = path.with_name(path.name + ".new")
        FileKeyProvider.create(pending)
        rotator.services.get(ContentVault).rewrap_all(FileKeyProvider(pending))  # committed, not yet renamed
        uid = add_user(shub, "late@example.ua")
        blob = serving_vault.encrypt_for_user(uid, "written mid-rotation")
        assert serving_vault.provider.key_id == FileKeyProvider(pending).key_id != old_id
        path.replace(path.with_name("old.key"))
        pending.replace(path)
        reopen_vault(shub)
        assert shub.services.get(ContentVault).decrypt_for_user(uid, blob) == "written mid-rotation"
    finally:
        rotator.close()


def test_a_serving_hub_that_cannot_load_the_new_key_refuses_to_wrap(data_dir: Path) -> None:
    """With the env provider the new key cannot be read by a running process: it fails closed."""
    import base64
    import secrets

    value = base64.b64encode(secrets.token_bytes(32)).decode()
    serving = new_hub(data_dir, None, sovereignty={"master_key": value})
    rotator = new_hub(data_dir, None, sovereignty={"master_key": value})
    try:
        vault = serving.services.get(ContentVault)
        rotate_master_key(rotator)
        uid = add_user(serving, "late@example.ua")
        with pytest.raises(ConfigError, match="rotated by another process"):
            vault.encrypt_for_user(uid, "would be wrapped under the retired key")
        with serving.db.session() as s:
            assert s.scalar(select(DataKey).where(DataKey.owner_id == uid)) is None  # nothing half-written
    finally:
        rotator.close()
        serving.close()
