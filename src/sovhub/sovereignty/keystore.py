"""Key-encryption keys kept outside the database: one 0600 file per person or organization.

A data key is sealed twice: by its owner's key-encryption key (KEK) from this store, then by the
master key. A database backup therefore holds nothing that opens content without the KEK, and
erasure deletes the KEK file: a backup restored afterwards stays unreadable with the current keys.
The directory is not part of the database; replicas share it (a shared volume).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import ConfigError

__all__ = ["KekStore"]

_KIND = re.compile(r"^[a-z]{1,8}$")


class KekStore:
    """Creates, reads and destroys 32-byte KEKs named ``<kind>-<owner id>.kek`` in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, kind: str, owner_id: int) -> Path:
        if not _KIND.match(kind) or owner_id < 0:
            raise ConfigError(f"invalid key owner {kind}:{owner_id}")
        return self.directory / f"{kind}-{int(owner_id)}.kek"

    def get(self, kind: str, owner_id: int) -> bytes | None:
        """The owner's KEK, or None when it was never made or was destroyed."""
        path = self._path(kind, owner_id)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"key file {path} is accessible by others (mode {mode:o}); run chmod 600 on it")
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError as exc:
            raise ConfigError(f"key file {path} is not valid base64") from exc
        if len(key) != 32:
            raise ConfigError(f"key file {path} does not hold a 32-byte key")
        return key

    def get_or_create(self, kind: str, owner_id: int) -> bytes:
        """The owner's KEK, written (whole, then linked into place) when absent; concurrent callers agree."""
        found = self.get(kind, owner_id)
        if found is not None:
            return found
        path = self._path(kind, owner_id)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = self.directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)  # fails when another process linked first: then theirs is used
            _fsync_dir(self.directory)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
        key = self.get(kind, owner_id)
        assert key is not None
        return key

    def destroy(self, kind: str, owner_id: int) -> bool:
        """Delete the owner's KEK for good (crypto-shredding); True when there was one."""
        path = self._path(kind, owner_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.directory)
        return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
