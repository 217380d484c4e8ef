"""All locale packs of a deployment: the bundled ones, DATA_DIR/locales, then `assistant.locale_dirs`.

A later folder's pack replaces an earlier one with the same code, so an operator can adapt a
bundled pack (say, a ministry's own system prompt for uk-UA) by copying it into DATA_DIR/locales.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError, NotFound
from .pack import LocalePack, load_pack

if TYPE_CHECKING:
    from ...settings import Settings

__all__ = ["BUILTIN_PACKS", "LocaleRegistry", "pack_dirs"]

BUILTIN_PACKS = Path(__file__).with_name("packs")


def pack_dirs(settings: Settings) -> list[Path]:
    """Where packs are looked for, weakest first; relative `locale_dirs` are under the data dir."""
    extra = [Path(d) if Path(d).is_absolute() else settings.data_dir / d for d in settings.assistant.locale_dirs]
    return [BUILTIN_PACKS, settings.data_dir / "locales", *extra]


class LocaleRegistry:
    """The packs found in `dirs` (missing folders are skipped; a broken pack is a ConfigError)."""

    def __init__(self, dirs: Sequence[Path], default: str = "en-GB") -> None:
        self.dirs = list(dirs)
        self._packs: dict[str, LocalePack] = {}
        for folder in self.dirs:
            if folder.is_file():
                raise ConfigError(f"locale pack folder {folder} is a file")
            if not folder.is_dir():
                continue
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                pack = load_pack(child, builtin=folder == BUILTIN_PACKS)
                self._packs[pack.code] = pack
        if default not in self._packs:
            raise ConfigError(f"assistant.default_locale: no locale pack {default!r} (have: {', '.join(self.codes)})")
        self.default = self._packs[default]

    @property
    def codes(self) -> list[str]:
        return sorted(self._packs)

    def packs(self) -> list[LocalePack]:
        return [self._packs[c] for c in self.codes]

    def get(self, code: str) -> LocalePack:
        try:
            return self._packs[code]
        except KeyError:
            raise NotFound(f"no locale pack {code!r} (have: {', '.join(self.codes)})") from None

    def match(self, tag: str | None) -> LocalePack:
        """The best pack for a language tag (uk-UA, uk, en-US...): exact, then same language, then default.

        Several packs of one language (es-ES, es-MX): the default pack wins if it is one of them,
        else the first by code, so the choice never depends on folder order.
        """
        if not tag:
            return self.default
        normalized = tag.replace("_", "-")
        parts = normalized.split("-")
        exact = f"{parts[0].lower()}-{parts[1].upper()}" if len(parts) > 1 else None
        if exact in self._packs:
            return self._packs[exact]
        language = parts[0].lower()
        same = [p for p in self.packs() if p.language == language]
        if self.default in same:
            return self.default
        return same[0] if same else self.default

    def lexicon_paths(self) -> list[Path]:
        """Every pack's lexicon.yaml, for the safety lexicon guard."""
        return [p.path / "lexicon.yaml" for p in self.packs()]

    def lexicons(self) -> dict[str, dict[str, list[str]]]:
        """{pack code: {hazard code: phrases}}."""
        return {p.code: p.lexicon for p in self.packs()}
