"""Jurisdiction codes: ISO 3166-1 alpha-2 countries, plus EU for the European Union as a whole."""

from __future__ import annotations

from functools import cache

from .errors import InvalidRequest

__all__ = ["known_jurisdictions", "validate_jurisdiction"]

_EXTRA = {"EU": "European Union"}


@cache
def known_jurisdictions() -> dict[str, str]:
    import pycountry

    codes = {c.alpha_2: c.name for c in pycountry.countries}
    codes.update(_EXTRA)
    return codes


def validate_jurisdiction(code: str) -> str:
    """Return the upper-case code, or raise InvalidRequest naming the bad value."""
    value = code.strip().upper()
    if value not in known_jurisdictions():
        raise InvalidRequest(
            f"unknown jurisdiction {code!r}: use an ISO 3166-1 alpha-2 code such as UA, PL, DE (or EU)",
            param="jurisdiction",
        )
    return value
