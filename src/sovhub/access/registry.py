"""Company registry lookups for organization verification (pluggable).

The hub asks ``lookup(country, number) -> RegistryEntry | None``. Built in: a file registry
(CSV or JSON, ``access.registry_file``) for tests and small deployments. A plugin connecting
to a national business register sets ``hub.services["org_registry"]`` to its own lookup in
`sovhub_init` or `sovhub_lifespan`; it wins over the file.

CSV columns: ``country,number,legal_name,status,representatives`` (representatives separated
by ``;``). JSON: a list of objects with the same keys (representatives a list).
"""

from __future__ import annotations

import csv
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["FileRegistry", "RegistryEntry", "RegistryLookup", "normalize_name", "registry_for"]


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    country: str
    number: str
    legal_name: str
    status: str
    representatives: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"country": self.country, "number": self.number, "legal_name": self.legal_name,
                "status": self.status, "representatives": list(self.representatives)}


class RegistryLookup(Protocol):
    def lookup(self, country: str, number: str) -> RegistryEntry | None: ...


# Letters that Unicode does not decompose into a base letter plus accent, but that people write
# without the accent in forms (a Polish "ł" typed as "l").
_FOLD = str.maketrans({"ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "æ": "ae", "Æ": "ae",
                       "œ": "oe", "Œ": "oe", "ı": "i", "ħ": "h"})


def normalize_name(name: str) -> str:
    """Casefolded, accents and punctuation dropped, spaces collapsed: 'Zoë  O’Neil' -> 'zoe oneil'."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_FOLD))
    kept = "".join(c for c in decomposed if c.isalnum() or c.isspace())
    return " ".join(kept.casefold().split())


def normalize_number(number: str) -> str:
    return "".join(c for c in number if c.isalnum()).upper()


class FileRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[tuple[str, str], RegistryEntry] | None = None
        self._mtime = 0.0

    def _load(self) -> dict[tuple[str, str], RegistryEntry]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            raise ConfigError(f"company registry file {self.path} is not readable: {exc}") from exc
        if self._entries is not None and mtime == self._mtime:
            return self._entries
        text = self.path.read_text(encoding="utf-8")
        rows: list[dict[str, Any]]
        if self.path.suffix.lower() == ".json":
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"company registry file {self.path}: not valid JSON: {exc}") from exc
        else:
            rows = []
            for row in csv.DictReader(text.splitlines()):
                reps = row.get("representatives") or ""
                rows.append({**row, "representatives": [r for r in reps.split(";") if r.strip()]})
        entries = {}
        for row in rows:
            try:
                entry = RegistryEntry(
                    country=str(row["country"]).strip().upper(), number=normalize_number(str(row["number"])),
                    legal_name=str(row["legal_name"]).strip(), status=str(row.get("status") or "active").strip(),
                    representatives=tuple(str(r).strip() for r in row.get("representatives") or []),
                )
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"company registry file {self.path}: bad row {row!r}: {exc}") from exc
            entries[(entry.country, entry.number)] = entry
        self._entries, self._mtime = entries, mtime
        return entries

    def lookup(self, country: str, number: str) -> RegistryEntry | None:
        return self._load().get((country.strip().upper(), normalize_number(number)))


def registry_for(hub: Hub) -> RegistryLookup | None:
    plugged = hub.services.get("org_registry")
    if plugged is not None:
        return plugged  # type: ignore[no-any-return]
    name = hub.settings.access.registry_file
    if not name:
        return None
    path = Path(name)
    if not path.is_absolute():
        path = hub.settings.data_dir / path
    registry = FileRegistry(path)
    hub.services["org_registry"] = registry
    return registry
