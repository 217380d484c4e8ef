"""`sovhub backup` and `sovhub restore`: the database and the key material, kept apart, onto a fresh instance.

A backup is two directories written to two destinations chosen apart (different media, different
custodians): the database half (a dialect-neutral dump, src/sovhub/store/dump.py) and the key half
(the master key file when the hub has one, the key store's per-person KEKs, the erasure journal,
the audit signing key, the secret key, the metrics token, the configuration). Neither opens
content alone. The database is read first, then the keys: a KEK made between the two is one the
snapshot does not need, and an erasure between the two is in the journal the key half carries.

A restore refuses anything but a fresh instance (an empty database, an empty key store, no other
key in place) and checks each file against its half's manifest. It loads the dump at the backup's
migration, migrates to this sovhub's schema, checks that the master key opens the database and
that the audit chain verifies up to the backed-up head, then re-applies every erasure the journals
(the key half's, the target's own, and any copies given) record for a person the database still
holds, and sets every id counter past the ids of erased people, so none is handed out again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import ConfigError, InvalidRequest
from ..secret_key import METRICS_TOKEN_FILE, SECRET_KEY_FILE
from ..store.db import Database
from ..store.dump import dump_tables, load_tables, reset_sequences, sha256_file
from ..store.tables import User
from .crypto import key_file_path, key_store_path
from .erasures import Erasure, journal_path, merge_journals, read_journal, write_journal
from .keystore import KekStore
from .tables import DataKey

if TYPE_CHECKING:
    from ..hub import Hub
    from ..settings import Settings

__all__ = ["BackupResult", "RestoreResult", "backup", "restore"]

FORMAT = "sovhub.backup.v1"
MANIFEST = "manifest.json"
DUMP = "database.jsonl.gz"


@dataclass(frozen=True, slots=True)
class BackupResult:
    backup_id: str
    database_dir: Path
    keys_dir: Path
    tables: dict[str, int]
    key_files: int


@dataclass(slots=True)
class RestoreResult:
    backup_id: str
    rows: int
    audit_entries: int
    erasures_reapplied: list[int] = field(default_factory=list)
    journal_entries: int = 0


def _file_based_master_key(settings: Settings) -> bool:
    sov = settings.sovereignty
    return not sov.master_key and sov.key_provider == "file"


def _signing_key_path(settings: Settings) -> Path:
    path = Path(settings.sovereignty.audit_signing_key_file)
    return path if path.is_absolute() else settings.data_dir / path


def _key_files(settings: Settings) -> dict[str, Path]:
    """The key half's files by their name in the backup, and where this instance keeps them."""
    files = {
        "audit-signing.key": _signing_key_path(settings),
        "secret_key": settings.data_dir / SECRET_KEY_FILE,
        "metrics_token": settings.data_dir / METRICS_TOKEN_FILE,
        "sovhub.toml": settings.config_path,
    }
    if _file_based_master_key(settings):
        files["master.key"] = key_file_path(settings)
    return files


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def _new_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    return path


def _copy_private(source: Path, target: Path) -> str:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    return sha256_file(target)


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    fd = os.open(directory / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")


def backup(hub: Hub, database_to: Path, keys_to: Path, *, actor: str = "cli") -> BackupResult:
    """Write the database half under `database_to` and the key half under `keys_to` (two places)."""
    database_to, keys_to = database_to.resolve(), keys_to.resolve()
    if _inside(database_to, keys_to) or _inside(keys_to, database_to):
        raise InvalidRequest("the database and the keys must go to two places, neither inside the other: "
                             "together they open every person's content")
    settings = hub.settings
    created = datetime.now(UTC)
    backup_id = created.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    db_dir = _new_dir(database_to / f"sovhub-{backup_id}-database")
    keys_dir = _new_dir(keys_to / f"sovhub-{backup_id}-keys")

    fd = os.open(db_dir / DUMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        counts, revision, facts = dump_tables(hub.db, out)
        out.flush()
        os.fsync(out.fileno())
    heads = Path(settings.sovereignty.audit_signed_heads_file)
    heads = heads if heads.is_absolute() else settings.data_dir / heads
    db_files = {DUMP: sha256_file(db_dir / DUMP)}
    if heads.is_file():
        db_files["audit-heads.jsonl"] = _copy_private(heads, db_dir / "audit-heads.jsonl")
    _write_manifest(db_dir, {
        "format": FORMAT, "part": "database", "backup_id": backup_id, "created_at": created.isoformat(),
        "revision": revision, "dialect": hub.db.engine.dialect.name, "tables": counts, "files": db_files,
        **facts,
    })

    # The keys after the snapshot: every KEK the snapshot's data keys need exists by now.
    key_files: dict[str, str] = {}
    for name, path in _key_files(settings).items():
        if path.is_file():
            key_files[name] = _copy_private(path, keys_dir / name)
    store = key_store_path(settings)
    journal = journal_path(settings)
    if store.is_dir():
        for kek in sorted(store.glob("*.kek")):
            key_files[f"keystore/{kek.name}"] = _copy_private(kek, keys_dir / "keystore" / kek.name)
    if journal.is_file():
        key_files["erasures.jsonl"] = _copy_private(journal, keys_dir / "erasures.jsonl")
    master = "master.key" if "master.key" in key_files else (
        f"held by the key provider {settings.sovereignty.key_provider!r}, not in this backup: escrow it apart")
    _write_manifest(keys_dir, {
        "format": FORMAT, "part": "keys", "backup_id": backup_id, "created_at": datetime.now(UTC).isoformat(),
        "database_created_at": created.isoformat(), "master_key": master, "files": key_files,
    })
    hub.emit("backup.created", actor=actor, subject=f"backup:{backup_id}",
             tables=sum(counts.values()), key_files=len(key_files))
    return BackupResult(backup_id, db_dir, keys_dir, counts, len(key_files))


# --- restore ---


def _read_manifest(directory: Path, part: str) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{directory} is not a sovhub backup (no {MANIFEST})") from exc
    except ValueError as exc:
        raise ConfigError(f"{directory / MANIFEST} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("part") != part:
        raise ConfigError(f"{directory} is not the {part} half of a sovhub backup ({FORMAT})")
    for name, digest in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            raise ConfigError(f"{path} is missing or does not match the backup's manifest (damaged or altered); "
                              "nothing was restored")
    return manifest


def _refuse_a_master_key_that_does_not_open_it(settings: Settings, database_from: Path, keys_from: Path,
                                               keys: dict[str, Any]) -> None:
    """The check value in the dump, opened with the master key the restored instance will use, before any write."""
    import gzip

    from .crypto import CHECK_NAME, FileKeyProvider, check_matches, load_key_provider
    from .tables import SovereigntyMeta

    check: SovereigntyMeta | None = None
    with gzip.open(database_from / DUMP, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"t":"sovereignty_meta"'):
                row = json.loads(line)["r"]
                if row["name"]["v"] == CHECK_NAME:
                    check = SovereigntyMeta(name=CHECK_NAME, value=row["value"]["v"])
                    break
    if check is None:
        return  # the backed-up hub never encrypted anything
    provider = FileKeyProvider(keys_from / "master.key") if "master.key" in keys["files"] \
        else load_key_provider(settings)
    if not check_matches(provider, check):
        raise ConfigError(f"the master key from {provider.source} (id {provider.key_id}) does not open this "
                          "database backup: the two halves are of different hubs, or the key was rotated since; "
                          "nothing was restored")


def _refuse_unless_fresh(settings: Settings, db: Database, keys: dict[str, Any]) -> None:
    tables = db.table_names()
    if tables:
        raise ConfigError(f"restore needs a fresh database, and {db.safe_url} holds {len(tables)} tables "
                          f"({', '.join(tables[:3])}...); nothing was restored")
    store = key_store_path(settings)
    if store.is_dir() and any(store.iterdir()):
        raise ConfigError(f"restore needs an empty key store, and {store} holds files; nothing was restored")
    for name, path in _key_files(settings).items():
        if name in keys["files"] and path.exists() and sha256_file(path) != keys["files"][name]:
            raise ConfigError(f"{path} exists and is not the backup's {name}; move it away (restore never "
                              "overwrites a key); nothing was restored")
    if "master.key" not in keys["files"] and _file_based_master_key(settings):
        raise ConfigError(f"the key half holds no master key ({keys.get('master_key')}); configure that key "
                          "provider (or SOVHUB_SOVEREIGNTY__MASTER_KEY) for this instance first")


def restore(settings: Settings, database_from: Path, keys_from: Path, *,
            journals: list[Path] | None = None, actor: str = "restore") -> RestoreResult:
    """Restore a backup onto this (fresh) instance; see the module docstring for every check."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from ..hub import build_hub
    from .audit import verify
    from .rights import erase_user

    dbm = _read_manifest(database_from, "database")
    keys = _read_manifest(keys_from, "keys")
    if keys["created_at"] < dbm["created_at"]:
        raise ConfigError(f"the key half ({keys['created_at']}) is older than the database half "
                          f"({dbm['created_at']}): people added in between could not be read; use a key "
                          "backup taken with or after this database backup")
    extra = [read_journal(p) for p in journals or []]
    for path in journals or []:
        if not path.is_file():
            raise ConfigError(f"erasure journal {path} not found")
    _refuse_a_master_key_that_does_not_open_it(settings, database_from, keys_from, keys)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        _refuse_unless_fresh(settings, db, keys)
        cfg = db.alembic_config()
        revision = dbm.get("revision")
        if revision:
            try:
                ScriptDirectory.from_config(cfg).get_revision(revision)
            except Exception as exc:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
                raise ConfigError(f"the backup is at migration {revision}, which this sovhub does not know "
                                  "(restore with the version that made it, or a newer one)") from exc
            command.upgrade(cfg, revision)
        counts = load_tables(db, database_from / DUMP)
        if counts != {k: v for k, v in dbm["tables"].items() if v}:
            raise ConfigError(f"the dump's rows {counts} do not match its manifest {dbm['tables']}")
        db.migrate()
    finally:
        db.dispose()

    # Key material into place (never over an existing file: checked above).
    for name, target in _key_files(settings).items():
        if name in keys["files"] and not target.exists():
            _copy_private(keys_from / name, target)
    store = key_store_path(settings)
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in keys["files"]:
        if name.startswith("keystore/"):
            _copy_private(keys_from / name, store / Path(name).name)
    live = journal_path(settings)
    merged = merge_journals(read_journal(keys_from / "erasures.jsonl"), read_journal(live), *extra)
    write_journal(live, merged)

    hub = build_hub(settings, migrate=False)
    try:
        hub.pm.hook.sovhub_init(hub=hub)  # the master key must open this database: refused otherwise
        hub.pm.hook.sovhub_restored(hub=hub)
        head = dbm.get("audit_head", {})
        checked, problem = verify(hub, upto=int(head.get("seq") or 0) or None)
        if problem is not None:
            raise ConfigError(f"the restored audit chain is broken at entry {problem.seq}: {problem.reason}")
        result = RestoreResult(dbm["backup_id"], sum(counts.values()), checked, journal_entries=len(merged))
        for entry in merged:
            if _holds_traces(hub, entry):
                erase_user(hub, entry.user_id, actor=actor, replay=True)
                result.erasures_reapplied.append(entry.user_id)
        reset_sequences(hub.db, {User.__tablename__: _highest_person_id(hub, merged)})
        hub.emit("backup.restored", actor=actor, subject=f"backup:{dbm['backup_id']}",
                 rows=result.rows, erasures_reapplied=len(result.erasures_reapplied))
    finally:
        hub.close()
    return result


def _holds_traces(hub: Hub, entry: Erasure) -> bool:
    """Whether the restored instance still holds anything of an erased person (the user row goes last)."""
    with hub.db.session() as s:
        if s.get(User, entry.user_id) is not None:
            return True
        if s.scalar(select(DataKey.id).where(DataKey.owner_kind == "user", DataKey.owner_id == entry.user_id)):
            return True
    return KekStore(key_store_path(hub.settings)).get("user", entry.user_id) is not None


def _highest_person_id(hub: Hub, erased: list[Erasure]) -> int:
    """The largest id ever given to a person this instance knows of: erased, or holding a KEK."""
    ids = [e.user_id for e in erased]
    store = key_store_path(hub.settings)
    for kek in store.glob("user-*.kek"):
        number = kek.stem.removeprefix("user-")
        if number.isdigit():
            ids.append(int(number))
    return max(ids, default=0)
