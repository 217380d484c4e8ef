"""Prices per model, effective-dated: a new price applies from its start, past debits keep theirs.

A price is in micro-credits per million tokens for input (prompt), output (completion) and
embedding tokens, and in micro-credits per request for moderation (and PII) requests. Costs round
up to the next micro-credit, once per request: ``ceil((prompt x input + completion x output) / 1e6)``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..errors import Conflict, InvalidRequest
from ..store.base import as_utc, utcnow
from .tables import CreditPrice

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["Price", "PriceBook", "list_prices", "set_price"]

_PER = 1_000_000
#: A start a little in the past is "now" (clocks of the CLI's machine and the database differ).
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Price:
    id: int
    model: str
    input_per_1m: int
    output_per_1m: int
    embedding_per_1m: int
    moderation_per_request: int
    effective_from: datetime

    def chat(self, prompt: int, completion: int) -> int:
        return -(-(prompt * self.input_per_1m + completion * self.output_per_1m) // _PER)

    def chat_upper(self, tokens: int) -> int:
        """The most a request of at most `tokens` tokens (prompt and answer) can cost."""
        return -(-(tokens * max(self.input_per_1m, self.output_per_1m)) // _PER)

    def embedding(self, tokens: int) -> int:
        return -(-(tokens * self.embedding_per_1m) // _PER)


def _row(row: CreditPrice) -> Price:
    return Price(row.id, row.model, row.input_per_1m, row.output_per_1m, row.embedding_per_1m,
                 row.moderation_per_request, as_utc(row.effective_from))


class PriceBook:
    """Every model's prices in time order, for lookups without the database."""

    def __init__(self, prices: Sequence[Price]) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for price in sorted(prices, key=lambda p: (p.model, p.effective_from)):
            self._by_model.setdefault(price.model, []).append(price)
        self._starts = {m: [p.effective_from for p in ps] for m, ps in self._by_model.items()}

    def at(self, model: str, when: datetime) -> Price | None:
        """The price in force for `model` at `when` (None: the model has no price then)."""
        starts = self._starts.get(model)
        if not starts:
            return None
        i = bisect.bisect_right(starts, when) - 1
        return self._by_model[model][i] if i >= 0 else None

    def all(self) -> list[Price]:
        return [p for ps in self._by_model.values() for p in ps]


def set_price(
    hub: Hub, model: str, *, input_per_1m: int, output_per_1m: int, embedding_per_1m: int = 0,
    moderation_per_request: int = 0, effective_from: datetime | None = None, actor: str,
) -> CreditPrice:
    """Add a price for `model` from `effective_from` (now when unset); an earlier start is refused."""
    model = model.strip()
    if not model or len(model) > 200:
        raise InvalidRequest("a price needs a model id of 1 to 200 characters", param="model")
    now = utcnow()
    start = as_utc(effective_from) if effective_from is not None else now
    if start < now - _SKEW:
        raise InvalidRequest("a price cannot start in the past: debits already made keep the price they had",
                             param="from")
    with hub.db.session() as s:
        if s.scalar(select(CreditPrice.id).where(CreditPrice.model == model, CreditPrice.effective_from == start)):
            raise Conflict(f"model {model} already has a price starting {start:%Y-%m-%d %H:%M:%S}", param="from")
        row = CreditPrice(model=model, input_per_1m=input_per_1m, output_per_1m=output_per_1m,
                          embedding_per_1m=embedding_per_1m, moderation_per_request=moderation_per_request,
                          effective_from=start, created_by=actor)
        s.add(row)
    hub.emit("price.set", actor=actor, subject=f"model:{model}", input_per_1m=input_per_1m,
             output_per_1m=output_per_1m, embedding_per_1m=embedding_per_1m,
             moderation_per_request=moderation_per_request, effective_from=start.isoformat())
    return row


def list_prices(hub: Hub) -> list[Price]:
    with hub.db.session() as s:
        return [_row(r) for r in s.scalars(select(CreditPrice).order_by(CreditPrice.model, CreditPrice.effective_from))]
