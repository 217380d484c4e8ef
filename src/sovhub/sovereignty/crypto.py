"""Encryption at rest: AES-256-GCM content under per-person / per-organization data keys.

Key hierarchy::

    master key (KeyProvider: file 0600, environment, or an HSM/Vault plugin)
      └── wraps, in table data_keys, one data key per user / organization, itself sealed by
          the owner's key-encryption key (keystore.py: a 0600 file outside the database)
            └── encrypt content blobs (conversations, titles, files)

Blob layout: ``version(1) | data key row id(8, big-endian) | nonce(12) | ciphertext+tag``. The
associated data binds a blob to its owner (``sovhub:user:42``), so a blob copied to another
owner's row does not decrypt. Destroying the owner's KEK (and the row) is crypto-shredding: a
database backup restored later holds the wrapped key, but no KEK opens it.

The database holds a check value (a constant wrapped by the master key): a missing or wrong
master key is refused at start with a ConfigError, before any data is read or written.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ConfigError, NotFound
from ..store.base import utcnow
from .keystore import KekStore
from .tables import DataKey, SovereigntyMeta

if TYPE_CHECKING:
    from ..hub import Hub
    from ..settings import Settings

__all__ = [
    "CHECK_NAME",
    "ContentVault",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "LocalKeyProvider",
    "check_matches",
    "ensure_master_key",
    "open_vault",
    "load_key_provider",
]

log = logging.getLogger("sovhub.sovereignty.crypto")

_VERSION = b"\x01"
CHECK_NAME = _CHECK_NAME = "master_key_check"
_CHECK_PLAINTEXT = b"sovhub master key check v1"
_KEK_LAYER = "kek_layer_v1"
_KEY_CACHE_TTL_S = 30.0  # an erasure in another process is honoured here within this time


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys; the master key never leaves it (an HSM keeps it inside)."""

    key_id: str
    source: str

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Return the data key; raise ConfigError when this master key did not wrap it."""
        ...


class LocalKeyProvider:
    """A master key held in process memory (from a file or the environment)."""

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) != 32:
            raise ConfigError(f"master key from {source} must be 32 bytes (base64 of 32 random bytes), got {len(key)}")
        self._aead = AESGCM(key)
        self.source = source
        self.key_id = hashlib.sha256(b"sovhub-master-key-id" + key).hexdigest()[:16]

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag as exc:
            raise ConfigError(f"the master key from {self.source} (id {self.key_id}) cannot unwrap this key") from exc


def _decode_key(text: str, source: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise ConfigError(f"master key from {source} is not valid base64") from exc


class FileKeyProvider(LocalKeyProvider):
    """The master key in a file of the data dir, readable by its owner only (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise ConfigError(f"master key file {path} is missing")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"master key file {path} is accessible by others (mode {mode:o}); run chmod 600 on it")
        super().__init__(_decode_key(path.read_text(encoding="ascii"), str(path)), str(path))

    @staticmethod
    def create(path: Path) -> None:
        """Write a new random key; O_EXCL so an existing key is never overwritten."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            fh.flush()
            os.fsync(fh.fileno())


class EnvKeyProvider(LocalKeyProvider):
    """The master key from settings.sovereignty.master_key (SOVHUB_SOVEREIGNTY__MASTER_KEY)."""

    def __init__(self, value: str) -> None:
        super().__init__(_decode_key(value, "SOVHUB_SOVEREIGNTY__MASTER_KEY"), "SOVHUB_SOVEREIGNTY__MASTER_KEY")


def key_file_path(settings: Settings) -> Path:
    path = Path(settings.sovereignty.master_key_file)
    return path if path.is_absolute() else settings.data_dir / path


def key_store_path(settings: Settings) -> Path:
    path = Path(settings.sovereignty.key_store_dir)
    return path if path.is_absolute() else settings.data_dir / path


def load_key_provider(settings: Settings) -> KeyProvider:
    """The configured provider; `module:factory` loads an HSM/Vault provider, factory(settings)."""
    sov = settings.sovereignty
    if sov.master_key or sov.key_provider == "env":
        if not sov.master_key:
            raise ConfigError("key_provider is 'env' but SOVHUB_SOVEREIGNTY__MASTER_KEY is not set")
        return EnvKeyProvider(sov.master_key)
    if sov.key_provider == "file":
        return FileKeyProvider(key_file_path(settings))
    module, _, attr = sov.key_provider.partition(":")
    if not attr:
        raise ConfigError(f"unknown key_provider {sov.key_provider!r}: use 'file', 'env' or 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load key provider {sov.key_provider!r}: {exc}") from exc
    provider = factory(settings)
    if not isinstance(provider, KeyProvider):
        raise ConfigError(f"key provider {sov.key_provider!r} does not implement wrap/unwrap/key_id/source")
    return provider


def _read_check(hub: Hub) -> SovereigntyMeta | None:
    with hub.db.session() as s:
        return s.get(SovereigntyMeta, _CHECK_NAME)


def check_matches(provider: KeyProvider, check: SovereigntyMeta) -> bool:
    """Whether `provider` is the master key the database's check value was wrapped with."""
    return _check_matches(provider, check)


def _check_matches(provider: KeyProvider, check: SovereigntyMeta) -> bool:
    try:
        return provider.unwrap(base64.b64decode(check.value), b"check") == _CHECK_PLAINTEXT
    except ConfigError:
        return False


def write_check(hub: Hub, provider: KeyProvider) -> None:
    value = base64.b64encode(provider.wrap(_CHECK_PLAINTEXT, b"check")).decode()
    with hub.db.session() as s:
        row = s.get(SovereigntyMeta, _CHECK_NAME)
        if row is None:
            s.add(SovereigntyMeta(name=_CHECK_NAME, value=value))
        else:
            row.value, row.updated_at = value, utcnow()


def ensure_master_key(hub: Hub) -> KeyProvider:
    """Load the master key and prove it is the database's; create it only in a new installation.

    Reads nothing but the check value before deciding, and writes nothing when it refuses.
    """
    settings = hub.settings
    check = _read_check(hub)
    path = key_file_path(settings)
    file_based = not settings.sovereignty.master_key and settings.sovereignty.key_provider == "file"
    if file_based:
        _finish_interrupted_rotation(path, check)
        if not path.exists():
            if check is not None:
                raise ConfigError(
                    f"master key file {path} is missing, but this database holds data encrypted under a "
                    "master key: restore the key file (from your key escrow) and start again; no data was touched"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            FileKeyProvider.create(path)
            log.info("created master key file %s (mode 0600)", path)
    provider = load_key_provider(settings)
    if check is None:
        write_check(hub, provider)
    elif not _check_matches(provider, check):
        raise ConfigError(
            f"wrong master key: the key from {provider.source} (id {provider.key_id}) is not the one this "
            "database was encrypted with; no data was touched"
        )
    return provider


def _finish_interrupted_rotation(path: Path, check: SovereigntyMeta | None) -> None:
    """A rotation writes KEY.new, commits the re-wrapped keys, then renames; finish a crash in between."""
    pending = path.with_name(path.name + ".new")
    if not pending.exists() or check is None:
        return
    try:
        new = FileKeyProvider(pending)
    except ConfigError:
        return
    if _check_matches(new, check):
        os.replace(pending, path)
        log.warning("finished an interrupted master key rotation: %s is now the master key", path)
    else:
        pending.unlink()  # the database still uses the old key: the rotation never committed


class ContentVault:
    """Encrypts and decrypts content for a person or an organization (the service API).

    Usage::

        vault = hub.services.get(ContentVault)
        blob = vault.encrypt_for_user(user.id, "my question")
        text = vault.decrypt_for_user(user.id, blob)

    The master key may be rotated by another process while this one serves: every wrap and
    unwrap first compares the database's check value with the one this process last proved, and
    reloads the key (from KEY, or KEY.new mid-rotation) when it changed, so no data key is ever
    wrapped under a retired master key.
    """

    def __init__(self, hub: Hub, provider: KeyProvider, check_value: str | None = None) -> None:
        self.hub = hub
        self.provider = provider
        self.keks = KekStore(key_store_path(hub.settings))
        self._check_value = check_value
        self._legacy_sealed = False
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, int], tuple[float, int, bytes]] = {}

    # --- the master key in force (rotation by another process) ---

    def _current_provider(self, s: Session, *, lock: bool = False) -> KeyProvider:
        query = select(SovereigntyMeta).where(SovereigntyMeta.name == _CHECK_NAME)
        if lock:
            query = query.with_for_update(read=True)
        check = s.scalar(query)
        if check is None or check.value == self._check_value:
            return self.provider
        with self._lock:
            if check.value != self._check_value:
                self.provider = self._reload(check)
                self._check_value = check.value
        return self.provider

    def _reload(self, check: SovereigntyMeta) -> KeyProvider:
        candidates: list[KeyProvider] = [self.provider]
        try:
            candidates.append(load_key_provider(self.hub.settings))
        except ConfigError as exc:
            log.warning("cannot reload the master key: %s", exc)
        if isinstance(self.provider, FileKeyProvider):
            pending = self.provider.path.with_name(self.provider.path.name + ".new")
            try:
                candidates.append(FileKeyProvider(pending))  # between the rotation's commit and its rename
            except ConfigError:
                pass
        for candidate in candidates:
            if _check_matches(candidate, check):
                if candidate.key_id != self.provider.key_id:
                    log.warning("master key rotated by another process: now using key %s", candidate.key_id)
                return candidate
        raise ConfigError(
            f"the master key was rotated by another process and this one cannot load the new key from "
            f"{self.provider.source}; restart it with the new key (no data key was wrapped under the old one)"
        )

    # --- data keys: sealed by the owner's KEK (outside the database), then by the master key ---

    @staticmethod
    def _aad(kind: str, owner_id: int) -> bytes:
        return f"sovhub:{kind}:{owner_id}".encode()

    def _seal(self, provider: KeyProvider, kind: str, owner_id: int, key: bytes) -> bytes:
        aad = self._aad(kind, owner_id)
        nonce = secrets.token_bytes(12)
        inner = nonce + AESGCM(self.keks.get_or_create(kind, owner_id)).encrypt(nonce, key, aad + b":kek")
        return provider.wrap(inner, aad)

    def _open(self, provider: KeyProvider, row: DataKey) -> bytes | None:
        """The data key, or None when the owner's KEK is gone (erased); a 32-byte inner is a legacy key."""
        aad = self._aad(row.owner_kind, row.owner_id)
        inner = provider.unwrap(row.wrapped, aad)
        if len(inner) == 32:
            return inner
        kek = self.keks.get(row.owner_kind, row.owner_id)
        if kek is None:
            return None
        try:
            return AESGCM(kek).decrypt(inner[:12], inner[12:], aad + b":kek")
        except InvalidTag:
            return None  # a KEK made after this key's own was destroyed (a restored backup)

    def _data_key(self, kind: str, owner_id: int, *, create: bool) -> tuple[int, bytes] | None:
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get((kind, owner_id))
        if cached is not None and now - cached[0] < _KEY_CACHE_TTL_S:
            return cached[1], cached[2]
        with self.hub.db.session() as s:
            row = s.scalar(select(DataKey).where(DataKey.owner_kind == kind, DataKey.owner_id == owner_id))
            provider = self._current_provider(s)
        key = self._open(provider, row) if row is not None else None
        if row is not None and key is None and create:
            self._drop_row(row.id)  # its KEK was destroyed: the old content stays unreadable, new gets a new key
            row = None
        if row is None:
            if not create:
                return None
            row, key = self._create_key(kind, owner_id)
        if key is None:
            return None
        with self._lock:
            self._keys[(kind, owner_id)] = (now, row.id, key)
        return row.id, key

    def _drop_row(self, row_id: int) -> None:
        with self.hub.db.session() as s:
            s.execute(delete(DataKey).where(DataKey.id == row_id))

    def _create_key(self, kind: str, owner_id: int) -> tuple[DataKey, bytes | None]:
        key = AESGCM.generate_key(bit_length=256)
        try:
            with self.hub.db.session() as s:
                row = DataKey(owner_kind=kind, owner_id=owner_id, wrapped=b"", master_key_id="")
                s.add(row)
                s.flush()  # holds the write lock (SQLite) / is invisible to a rotation until commit (PostgreSQL)
                # Read the master key in force only now, inside this transaction: a rotation either
                # committed before (its check value is seen here) or waits for this commit and re-wraps it.
                provider = self._current_provider(s, lock=True)
                row.wrapped = self._seal(provider, kind, owner_id, key)
                row.master_key_id = provider.key_id
        except IntegrityError:
            # Another process created it first: use theirs.
            with self.hub.db.session() as s:
                found = s.scalar(select(DataKey).where(DataKey.owner_kind == kind, DataKey.owner_id == owner_id))
                provider = self._current_provider(s)
            assert found is not None
            return found, self._open(provider, found)
        return row, key

    def destroy_key(self, kind: str, owner_id: int) -> bool:
        """Crypto-shredding: delete the owner's KEK, then the wrapped data key; every copy becomes unreadable."""
        with self._lock:
            self._keys.pop((kind, owner_id), None)
        kek = self.keks.destroy(kind, owner_id)
        with self.hub.db.session() as s:
            result = s.execute(delete(DataKey).where(DataKey.owner_kind == kind, DataKey.owner_id == owner_id))
        return kek or bool(getattr(result, "rowcount", 0))

    def seal_legacy_keys(self) -> int:
        """Move data keys made before the KEK layer under their owner's KEK (once per database)."""
        with self._lock:
            if self._legacy_sealed:
                return 0
        moved = 0
        try:
            with self.hub.db.session() as s:
                if s.get(SovereigntyMeta, _KEK_LAYER) is None:
                    s.add(SovereigntyMeta(name=_KEK_LAYER, value="1"))
                    s.flush()  # the write lock first, as a rotation takes it
                    provider = self._current_provider(s, lock=True)
                    for row in s.scalars(select(DataKey).with_for_update()):
                        inner = provider.unwrap(row.wrapped, self._aad(row.owner_kind, row.owner_id))
                        if len(inner) == 32:
                            row.wrapped = self._seal(provider, row.owner_kind, row.owner_id, inner)
                            moved += 1
        except IntegrityError:
            moved = 0  # another process starting at the same time did it
        with self._lock:
            self._legacy_sealed = True
        if moved:
            log.info("moved %d data keys under per-owner key-encryption keys", moved)
        return moved

    # --- content ---

    def encrypt(self, kind: str, owner_id: int, plaintext: str) -> bytes:
        return self.encrypt_bytes(kind, owner_id, plaintext.encode("utf-8"))

    def decrypt(self, kind: str, owner_id: int, blob: bytes) -> str:
        return self.decrypt_bytes(kind, owner_id, blob).decode("utf-8")

    def exported_json(self, kind: str, owner_id: int, blob: bytes) -> dict[str, Any]:
        """A sealed JSON object as an export shows it: its fields, or why it cannot be read (its key erased)."""
        try:
            content: dict[str, Any] = json.loads(self.decrypt(kind, owner_id, blob))
        except NotFound as exc:
            return {"unreadable": exc.message}
        return content

    def encrypt_bytes(self, kind: str, owner_id: int, data: bytes, *, context: bytes = b"") -> bytes:
        """`data` sealed under the owner's data key; `context` (e.g. a file id and chunk number) is bound
        to the blob, so a blob moved to another place fails to open."""
        found = self._data_key(kind, owner_id, create=True)
        if found is None:
            raise NotFound(f"no usable data key for {kind}:{owner_id}")
        key_row, key = found
        nonce = secrets.token_bytes(12)
        body = AESGCM(key).encrypt(nonce, data, self._aad(kind, owner_id) + context)
        return _VERSION + key_row.to_bytes(8, "big") + nonce + body

    def decrypt_bytes(self, kind: str, owner_id: int, blob: bytes, *, context: bytes = b"") -> bytes:
        if len(blob) < 1 + 8 + 12 + 16 or blob[:1] != _VERSION:
            raise NotFound(f"not a sovhub content blob (owner {kind}:{owner_id})")
        found = self._data_key(kind, owner_id, create=False)
        key_row = int.from_bytes(blob[1:9], "big")
        if found is None or found[0] != key_row:
            raise NotFound(f"content of {kind}:{owner_id} is unreadable: its data key was destroyed (erased)")
        try:
            return AESGCM(found[1]).decrypt(blob[9:21], blob[21:], self._aad(kind, owner_id) + context)
        except InvalidTag as exc:
            raise NotFound(f"content of {kind}:{owner_id} failed authentication (altered or misplaced)") from exc

    def encrypt_for_user(self, user_id: int, plaintext: str) -> bytes:
        return self.encrypt("user", user_id, plaintext)

    def decrypt_for_user(self, user_id: int, blob: bytes) -> str:
        return self.decrypt("user", user_id, blob)

    def encrypt_for_org(self, org_id: int, plaintext: str) -> bytes:
        return self.encrypt("org", org_id, plaintext)

    def decrypt_for_org(self, org_id: int, blob: bytes) -> str:
        return self.decrypt("org", org_id, blob)

    # --- master key rotation ---

    def rewrap_all(self, new: KeyProvider) -> int:
        """Re-wrap every data key under `new` in one transaction; content is not re-encrypted.

        The check value is written first: that takes the write lock (SQLite) or the check row's
        lock (PostgreSQL), so a data key being created elsewhere either committed before and is
        re-wrapped here, or waits and sees the new check value.
        """
        value = base64.b64encode(new.wrap(_CHECK_PLAINTEXT, b"check")).decode()
        with self.hub.db.session() as s:
            check = s.scalar(select(SovereigntyMeta).where(SovereigntyMeta.name == _CHECK_NAME).with_for_update())
            old = self._current_provider(s) if check is None else self._proved(check)
            if check is None:
                s.add(SovereigntyMeta(name=_CHECK_NAME, value=value))
            else:
                check.value, check.updated_at = value, utcnow()
            s.flush()
            rows = list(s.scalars(select(DataKey).with_for_update()))
            for row in rows:
                aad = self._aad(row.owner_kind, row.owner_id)
                inner = old.unwrap(row.wrapped, aad)
                row.wrapped = self._seal(new, row.owner_kind, row.owner_id, inner) if len(inner) == 32 \
                    else new.wrap(inner, aad)
                row.master_key_id = new.key_id
        with self._lock:
            self.provider, self._check_value = new, value
        return len(rows)

    def _proved(self, check: SovereigntyMeta) -> KeyProvider:
        if check.value != self._check_value:
            self.provider = self._reload(check)
            self._check_value = check.value
        return self.provider


def open_vault(hub: Hub) -> ContentVault:
    """The vault over this hub's master key, once the key is proved to be the database's."""
    provider = ensure_master_key(hub)
    check = _read_check(hub)
    vault = ContentVault(hub, provider, check.value if check is not None else None)
    vault.seal_legacy_keys()
    return vault
