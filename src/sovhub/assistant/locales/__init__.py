"""Locale packs: a country's or language's system prompt, guidance, conventions, glossary and lexicon.

    registry = locale_registry(hub)
    pack = registry.match("uk")          # -> the uk-UA pack
    messages = [{"role": "system", "content": pack.compose_system_prompt()}, ...]
"""

from __future__ import annotations

from .pack import PACK_FILES, Conventions, LocalePack, load_pack
from .registry import BUILTIN_PACKS, LocaleRegistry, locale_registry, pack_dirs

__all__ = [
    "BUILTIN_PACKS",
    "PACK_FILES",
    "Conventions",
    "LocalePack",
    "LocaleRegistry",
    "load_pack",
    "locale_registry",
    "pack_dirs",
]
