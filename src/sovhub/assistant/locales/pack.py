"""One locale pack: a folder of YAML and text that adapts the assistant to a country and language.

    uk-UA/
      pack.yaml          code, language, names, text direction, conventions, default collection
      system_prompt.txt  the assistant's system prompt, in the pack's language
      guidance.md        public-service guidance: emergency numbers, official portals, how things work
      glossary.yaml      {term: explanation}: the country's official terminology
      lexicon.yaml       {S1..S14: [phrases]}: safety lexicon additions, by hazard code

Every problem is reported as a ConfigError naming the file and what is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import ConfigError

__all__ = ["PACK_FILES", "Conventions", "LocalePack", "load_pack"]

PACK_FILES = ("pack.yaml", "system_prompt.txt", "guidance.md", "glossary.yaml", "lexicon.yaml")
_CODE = re.compile(r"^[a-z]{2,3}-[A-Z]{2}$")
_HAZARD = re.compile(r"^S(?:[1-9]|1[0-4])$")


class Conventions(BaseModel):
    """How dates, numbers and addresses are written (CLDR patterns, so Babel can use them as they are)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date_format: str = Field(description="CLDR date pattern, e.g. dd.MM.y.")
    time_format: str = Field(description="CLDR time pattern, e.g. HH:mm.")
    first_day_of_week: Literal["monday", "saturday", "sunday"] = "monday"
    decimal_separator: str
    group_separator: str
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    measurement: Literal["metric", "imperial", "mixed"] = "metric"
    phone_prefix: str = Field(pattern=r"^\+\d{1,4}$")
    address_format: str = Field(description="Lines with {name}, {street}, {postcode}, {city}... placeholders.")
    address_example: str


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    language: str = Field(pattern=r"^[a-z]{2,3}$", description="ISO 639-1 code (639-3 when there is none).")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.")
    name: str = Field(min_length=1, description="English name.")
    native_name: str = Field(min_length=1)
    direction: Literal["ltr", "rtl"]
    default_collection: str = Field(pattern=r"^[\w][\w.-]{0,119}$")
    conventions: Conventions

    @field_validator("code")
    @classmethod
    def _code_shape(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError("must look like uk-UA: language (lower case), a dash, country (upper case)")
        return value


@dataclass(frozen=True, slots=True)
class LocalePack:
    code: str
    language: str
    country: str
    name: str
    native_name: str
    direction: Literal["ltr", "rtl"]
    default_collection: str
    conventions: Conventions
    system_prompt: str
    guidance: str
    glossary: dict[str, str]
    lexicon: dict[str, list[str]]
    path: Path
    builtin: bool = field(default=False)

    @property
    def rtl(self) -> bool:
        return self.direction == "rtl"

    def compose_system_prompt(self, *, guidance: bool = True, glossary: bool = True) -> str:
        """The system prompt with the guidance and glossary appended: what the model is told."""
        parts = [self.system_prompt.strip()]
        if guidance and self.guidance.strip():
            parts.append(self.guidance.strip())
        if glossary and self.glossary:
            parts.append("\n".join(f"- {term}: {meaning}" for term, meaning in self.glossary.items()))
        return "\n\n".join(parts)

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for the language switcher and the admin page."""
        return {
            "code": self.code, "language": self.language, "country": self.country, "name": self.name,
            "native_name": self.native_name, "direction": self.direction,
            "default_collection": self.default_collection, "conventions": self.conventions.model_dump(),
            "path": str(self.path), "builtin": self.builtin,
        }


def _read(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"locale pack {path.parent}: missing {path.name}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"locale pack file {path}: not UTF-8 ({exc.reason})") from exc
    if not text.strip():
        raise ConfigError(f"locale pack file {path}: is empty")
    return text


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(_read(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"locale pack file {path}: not valid YAML: {exc}") from exc


def _problems(path: Path, exc: ValidationError) -> ConfigError:
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
    return ConfigError(f"locale pack file {path}: {details}")


def _glossary(path: Path) -> dict[str, str]:
    data = _yaml(path)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip() for k, v in data.items()
    ):
        raise ConfigError(f"locale pack file {path}: must map each term to its explanation (text: text)")
    return {k.strip(): v.strip() for k, v in data.items()}


def _lexicon(path: Path) -> dict[str, list[str]]:
    data = _yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"locale pack file {path}: must map hazard codes (S1..S14) to lists of phrases")
    out: dict[str, list[str]] = {}
    for code, phrases in data.items():
        if not isinstance(code, str) or not _HAZARD.match(code):
            raise ConfigError(f"locale pack file {path}: unknown hazard code {code!r} (use S1..S14)")
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ConfigError(f"locale pack file {path}: {code} must be a non-empty list of phrases")
        out[code] = [p.strip() for p in phrases]
    return out


def load_pack(folder: Path | str, *, builtin: bool = False) -> LocalePack:
    """Read and validate one pack folder; the folder's name must be the pack's code."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"locale pack {root}: not a folder")
    raw = _yaml(root / "pack.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"locale pack file {root / 'pack.yaml'}: must be a mapping of settings")
    if raw.get("direction") not in (None, "ltr", "rtl"):
        raise ConfigError(
            f"locale pack file {root / 'pack.yaml'}: unknown text direction {raw.get('direction')!r} (ltr or rtl)"
        )
    try:
        manifest = _Manifest.model_validate(raw)
    except ValidationError as exc:
        raise _problems(root / "pack.yaml", exc) from exc
    if manifest.code != root.name:
        raise ConfigError(f"locale pack {root}: folder name must be the pack's code {manifest.code!r}")
    if manifest.code.split("-")[0] != manifest.language or manifest.code.split("-")[1] != manifest.country:
        raise ConfigError(
            f"locale pack file {root / 'pack.yaml'}: code {manifest.code} disagrees with language/country"
        )
    return LocalePack(
        code=manifest.code, language=manifest.language, country=manifest.country, name=manifest.name,
        native_name=manifest.native_name, direction=manifest.direction,
        default_collection=manifest.default_collection, conventions=manifest.conventions,
        system_prompt=_read(root / "system_prompt.txt").strip(), guidance=_read(root / "guidance.md").strip(),
        glossary=_glossary(root / "glossary.yaml"), lexicon=_lexicon(root / "lexicon.yaml"), path=root,
        builtin=builtin,
    )
