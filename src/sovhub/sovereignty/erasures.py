"""The erasure journal: every erasure, recorded outside the database, so a restore can re-apply it.

A database backup restored after an erasure brings the person's rows back (their content stays
unreadable: the KEK is gone). The journal is what lets `sovhub restore` erase them again: one JSON
line per erasure, ``{"user_id": 42, "at": "<UTC time>"}``, appended and fsynced *before* the erasure
touches anything, in a file beside the key store (``sovereignty.erasure_journal_file``; replicas
share it as they share the key store). It holds the pseudonymous id only, as the audit log does:
never an e-mail address or a name. Ship a copy off the host with the audit heads; `sovhub restore
--erasures FILE` merges such copies with the one in the key backup.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..store.base import utcnow

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Erasure", "append_erasure", "journal_path", "merge_journals", "read_journal", "write_journal"]

JOURNAL_NAME = "erasures.jsonl"


@dataclass(frozen=True, slots=True)
class Erasure:
    user_id: int
    at: str

    def line(self) -> str:
        return json.dumps({"user_id": self.user_id, "at": self.at}, sort_keys=True)


def journal_path(settings: Settings) -> Path:
    from .crypto import key_store_path

    configured = settings.sovereignty.erasure_journal_file
    if configured is None:
        return key_store_path(settings) / JOURNAL_NAME
    path = Path(configured)
    return path if path.is_absolute() else settings.data_dir / path


def append_erasure(settings: Settings, user_id: int, *, at: datetime | None = None) -> Erasure:
    """Record an erasure durably (O_APPEND, fsync) before it starts; raises ConfigError when it cannot."""
    entry = Erasure(int(user_id), (at or utcnow()).isoformat(timespec="microseconds"))
    path = journal_path(settings)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (entry.line() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"cannot record the erasure in the journal {path}: {exc}; nothing was erased") from exc
    return entry


def read_journal(path: Path) -> list[Erasure]:
    """The journal's entries; a torn last line (a crash mid-write) is skipped, any other bad line refused."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the erasure journal {path}: {exc}") from exc
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            entries.append(Erasure(int(data["user_id"]), str(data["at"])))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):
                continue
            raise ConfigError(f"{path}, line {number}: not an erasure journal entry ({exc})") from exc
    return entries


def merge_journals(*journals: Iterable[Erasure]) -> list[Erasure]:
    """Every person erased in any of the journals, once (their first erasure), oldest first."""
    first: dict[int, Erasure] = {}
    for journal in journals:
        for entry in journal:
            known = first.get(entry.user_id)
            if known is None or entry.at < known.at:
                first[entry.user_id] = entry
    return sorted(first.values(), key=lambda e: (e.at, e.user_id))


def write_journal(path: Path, entries: list[Erasure]) -> None:
    """Replace the journal with `entries` (whole, then renamed into place)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.writelines(e.line() + "\n" for e in entries)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(draft, path)
