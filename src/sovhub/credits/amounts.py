"""Credits as exact integers: micro-credits, parsing and showing them, and splitting one by shares.

One credit is 1,000,000 micro-credits (µcr). Every balance, price and transfer is a whole number of
micro-credits, so sums are exact; decimals appear only where people read or type amounts.
A price in credits per million tokens is, conveniently, the same number of micro-credits per token.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from ..errors import InvalidRequest

__all__ = ["MICRO", "SHARE_WHOLE", "as_number", "format_credits", "parse_credits", "parse_share", "split_by_shares"]

MICRO = 1_000_000
#: Shares are held in hundredths of a percent: 100% = 10,000.
SHARE_WHOLE = 10_000
K = TypeVar("K", bound=Hashable)


def parse_credits(text: str | int | float | Decimal, *, param: str = "credits", allow_zero: bool = True) -> int:
    """'12.5' -> 12_500_000 micro-credits; more than six decimals, negatives and non-numbers are refused."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidRequest(f"{param}: {text!r} is not a number of credits", param=param) from None
    if not value.is_finite():
        raise InvalidRequest(f"{param}: {text!r} is not a number of credits", param=param)
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise InvalidRequest(f"{param}: at most six decimals (one micro-credit), got {text}", param=param)
    if micro < 0 or (micro == 0 and not allow_zero):
        raise InvalidRequest(f"{param}: must be {'>= 0' if allow_zero else '> 0'}, got {text}", param=param)
    if micro > 10**18:
        raise InvalidRequest(f"{param}: {text} is more credits than the ledger holds", param=param)
    return int(micro)


def format_credits(micro: int) -> str:
    """12_500_000 -> '12.5'; exact (no float on the way)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    return f"{sign}{whole}" + (f".{frac:06d}".rstrip("0") if frac else "")


def as_number(micro: int) -> float | int:
    """For JSON: a whole number of credits as an int, else a float (six decimals round-trip exactly)."""
    whole, frac = divmod(int(micro), MICRO)
    return whole if frac == 0 else int(micro) / MICRO


def parse_share(text: str, *, param: str = "share") -> int:
    """'33.33' (percent) -> 3333 hundredths of a percent."""
    try:
        value = Decimal(str(text).strip().rstrip("%"))
    except InvalidOperation:
        raise InvalidRequest(f"{param}: {text!r} is not a percentage", param=param) from None
    hundredths = value * 100
    if not value.is_finite() or hundredths != hundredths.to_integral_value():
        raise InvalidRequest(f"{param}: a percentage with at most two decimals, got {text!r}", param=param)
    if not 0 < hundredths <= SHARE_WHOLE:
        raise InvalidRequest(f"{param}: must be more than 0 and at most 100, got {text}", param=param)
    return int(hundredths)


def split_by_shares(amount: int, shares: Sequence[tuple[K, int]]) -> dict[K, int]:
    """Split `amount` by `shares` (which sum to SHARE_WHOLE) exactly: the parts always sum to `amount`.

    Largest remainder (Hamilton's method): each part is the floor of its exact quota, and the
    micro-credits left over go one each to the parts with the largest fractions, ties to the
    earlier entry, so the same inputs always give the same split.
    """
    if amount < 0:
        raise ValueError("cannot split a negative amount")
    total = sum(s for _, s in shares)
    if not shares or total != SHARE_WHOLE or any(s <= 0 for _, s in shares):
        raise ValueError(f"shares must be positive and sum to {SHARE_WHOLE}, got {total}")
    parts: dict[K, int] = {}
    remainders: list[tuple[int, int, K]] = []
    for order, (key, share) in enumerate(shares):
        whole, rest = divmod(amount * share, SHARE_WHOLE)
        parts[key] = parts.get(key, 0) + whole
        remainders.append((-rest, order, key))
    left = amount - sum(parts.values())
    for _, _, key in sorted(remainders)[:left]:
        parts[key] += 1
    return parts
