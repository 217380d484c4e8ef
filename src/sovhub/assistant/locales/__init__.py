"""Locale packs: a country's or language's system prompt, guidance, conventions, glossary and lexicon.

    registry = hub.services.get(LocaleRegistry)
    pack = registry.match("uk")          # -> the uk-UA pack
    messages = [{"role": "system", "content": pack.compose_system_prompt()}, ...]
"""

from __future__ import annotations

from .pack import PACK_FILES, Conventions, LocalePack, load_pack
from .registry import BUILTIN_PACKS, LocaleRegistry, pack_dirs

__all__ = [
    "BUILTIN_PACKS",
    "PACK_FILES",
    "Conventions",
    "LocalePack",
    "LocaleRegistry",
    "load_pack",
    "pack_dirs",
]
