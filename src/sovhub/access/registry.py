"""Company registry lookups for organization verification (pluggable).

The hub asks ``lookup(country, number) -> RegistryEntry | None``. Built in: a file registry
(CSV or JSON, ``access.registry_file``) for tests and small deployments. A plugin connecting
to a national business register provides a service that needs :class:`OrgRegistry` and sets its
``source`` to its own lookup when built; it wins over the file.

CSV columns: ``country,number,legal_name,status,representatives``; representatives separated by
``;``, each ``Full Name|YYYY-MM-DD|person-id`` (birth date and identifier optional). JSON: a list of
objects with the same keys, representatives a list of ``{"name", "birthdate", "person_id"}``.

A representative matches the person who signed in with eID by the national person identifier
when both sides carry one (and then only by it), else by name AND birth date; a name alone never
matches (namesakes exist). Names compare after :func:`normalize_name`, identifiers and dates after
NFKC, casefolding and dropping whitespace.
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

__all__ = [
    "FileRegistry", "OrgRegistry", "RegistryEntry", "RegistryLookup", "Representative", "normalize_key",
    "normalize_name", "normalize_number", "representative",
]


@dataclass(frozen=True, slots=True)
class Representative:
    """A legal representative as the registry lists them."""

    name: str
    birthdate: str | None = None  # ISO date, YYYY-MM-DD
    person_id: str | None = None  # the national person identifier, where the registry holds it

    def matches(self, name: str, birthdate: str | None, person_id: str | None) -> bool:
        """Whether the eID person (full name, birth date, identifier) is this representative."""
        if self.person_id and person_id:
            return normalize_key(self.person_id) == normalize_key(person_id)
        return bool(
            self.birthdate and birthdate and normalize_key(self.birthdate) == normalize_key(birthdate)
            and normalize_name(self.name) and normalize_name(self.name) == normalize_name(name)
        )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "birthdate": self.birthdate, "person_id": self.person_id}


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    country: str
    number: str
    legal_name: str
    status: str
    representatives: tuple[Representative, ...]

    def __post_init__(self) -> None:
        # A plugin may still list representatives as plain names: kept, but a name alone never matches.
        object.__setattr__(self, "representatives", tuple(representative(r) for r in self.representatives))

    def as_dict(self) -> dict[str, Any]:
        return {"country": self.country, "number": self.number, "legal_name": self.legal_name,
                "status": self.status, "representatives": [r.as_dict() for r in self.representatives]}


def representative(value: Any) -> Representative:
    """A registry row's representative: ``"Name|YYYY-MM-DD|id"``, a mapping, or a Representative."""
    if isinstance(value, Representative):
        return value
    if isinstance(value, dict):
        parts = [str(value.get(k) or "") for k in ("name", "birthdate", "person_id")]
    elif isinstance(value, str):
        parts = (value.split("|") + ["", ""])[:3]
    else:
        raise TypeError(f"a representative is a string or an object, not {type(value).__name__}")
    name, birthdate, person_id = (p.strip() for p in parts)
    if not name:
        raise TypeError("a representative needs a name")
    return Representative(name=name, birthdate=birthdate or None, person_id=person_id or None)


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


def normalize_key(value: str) -> str:
    """An identifier or date as compared: NFKC, casefolded, without whitespace."""
    return "".join(unicodedata.normalize("NFKC", value).casefold().split())


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
                    representatives=tuple(representative(r) for r in row.get("representatives") or []),
                )
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"company registry file {self.path}: bad row {row!r}: {exc}") from exc
            entries[(entry.country, entry.number)] = entry
        self._entries, self._mtime = entries, mtime
        return entries

    def lookup(self, country: str, number: str) -> RegistryEntry | None:
        return self._load().get((country.strip().upper(), normalize_number(number)))


class OrgRegistry:
    """The registry organizations are verified against: ``source`` is None when none is connected."""

    def __init__(self, hub: Hub) -> None:
        self.source: RegistryLookup | None = None
        name = hub.settings.access.registry_file
        if name:
            path = Path(name)
            self.source = FileRegistry(path if path.is_absolute() else hub.settings.data_dir / path)
