"""Settings of start-up programmes, prices and the credits ledger (``[credits]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["CreditsSettings"]


class CreditsSettings(BaseModel):
    """Start-up programmes, prices and the credits ledger (docs/credits.md)."""

    free_unpriced_models: bool = Field(
        False, description="Requests for a model without a price cost nothing; otherwise organizations that pay "
        "with credits are refused (403 model_not_priced) until `sovhub prices set` names its price."
    )
    free_models: list[str] = Field(
        default_factory=list, description="Models that cost nothing even without a price (e.g. a small local model)."
    )
    batch_discount_percent: float = Field(
        0.0, ge=0, lt=100, description="Discount on the price of batch work (the lines of a `/v1/batches` batch), "
        "applied to the reservation and to the cost the ledger posts."
    )
    reservation_ttl_s: float = Field(
        3600.0, ge=10, description="Seconds a request's reservation lives: one whose replica never settled it "
        "(killed) is then posted at its reserved amount and the rest of the hold is gone (docs/credits.md)."
    )
    settle_interval_s: float = Field(
        0.005, gt=0, description="Seconds between batched settlements (real cost posted, rest released): one "
        "Redis call for all requests that ended in the interval."
    )
    journal_interval_s: float = Field(
        0.2, gt=0, description="Seconds between copies of the live journal into the ledger's database (batched)."
    )
    journal_batch: int = Field(2000, ge=1, description="Journal entries written to the ledger per transaction.")
    apply_url: str | None = Field(
        None, description="Where organizations apply for credits, named in 'out of credits' errors; "
        "PUBLIC_URL/hub/v1/programmes when unset."
    )
    redis_prefix: str = Field("sovhub:cr:", description="Prefix of the Redis keys of live credit balances.")
    low_balance_percent: float = Field(
        10.0, ge=0, lt=100, description="A grant whose balance falls under this share of what was granted is "
        "low: its organization gets one notice (web app, `credits.low_balance` event) per crossing and answers "
        "carry `x-sovhub-credits-low`; 0 turns the notice off."
    )
