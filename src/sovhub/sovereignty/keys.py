"""Master key rotation: re-wrap the data keys under a new master key; content stays as it is.

For the key file the order is crash-safe: the new key is written to KEY.new (0600, fsynced),
the re-wrapped data keys and the new check value are committed in one transaction, and only
then KEY.new replaces KEY. A crash before the commit leaves the old key in force (KEY.new is
discarded at the next start); a crash after it is finished at the next start.
"""

from __future__ import annotations

import base64
import os
import secrets
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .crypto import ContentVault, EnvKeyProvider, FileKeyProvider, key_file_path

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["rotate_master_key"]


def rotate_master_key(hub: Hub, *, actor: str = "cli") -> str:
    """Rotate and return a message for the operator."""
    vault = hub.services.get(ContentVault)
    old = vault.provider
    if isinstance(old, FileKeyProvider):
        path = key_file_path(hub.settings)
        pending = path.with_name(path.name + ".new")
        pending.unlink(missing_ok=True)
        FileKeyProvider.create(pending)
        count = vault.rewrap_all(FileKeyProvider(pending))
        os.replace(pending, path)
        _fsync_dir(path.parent)
        new: FileKeyProvider | EnvKeyProvider = FileKeyProvider(path)
        vault.provider = new
        message = f"re-wrapped {count} data keys under the new master key {new.key_id} in {path}"
    elif isinstance(old, EnvKeyProvider):
        value = base64.b64encode(secrets.token_bytes(32)).decode()
        new = EnvKeyProvider(value)
        count = vault.rewrap_all(new)
        message = (f"re-wrapped {count} data keys under the new master key {new.key_id}. Set it NOW, before the "
                   f"next start, or the data cannot be read:\nSOVHUB_SOVEREIGNTY__MASTER_KEY={value}")
    else:
        raise ConfigError(f"key provider {old.source} rotates its key itself (HSM/Vault tooling); "
                          "sovhub keys rotate-master handles the file and env providers")
    hub.emit("master_key.rotated", actor=actor, subject="master_key", old_key_id=old.key_id,
             new_key_id=new.key_id, data_keys=count)
    return message


def _fsync_dir(path: os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
