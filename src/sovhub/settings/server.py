"""Settings of how a replica serves among others (``[server]``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ServerSettings"]


class ServerSettings(BaseModel):
    """How a replica serves among others: shutdown drain, cache invalidation, periodic work (docs/operations.md)."""

    drain_seconds: float = Field(
        20.0, ge=0, le=3600, description="On SIGTERM: seconds the listener stays open and requests are served while "
        "/readyz answers 503 (the load balancer takes the replica out); answers still running then end with an "
        "in-band error (streams: an error event and [DONE]), are metered, and the process exits. The chart's "
        "preStop and terminationGracePeriodSeconds must leave it this long."
    )
    invalidation: bool = Field(
        True, description="With access.redis_url: publish every change to keys, organizations, verification, tiers, "
        "limits, prices and policy on Redis, so every replica drops its cached copies within a second (the caches' "
        "TTLs remain as the fallback)."
    )
    usage_journal_dir: str = Field(
        "usage-journal", description="Directory, relative to the data dir, of the append-only usage journal: each "
        "answered request is written there before its last byte leaves, and a replica killed before its batch "
        "reached the database has it replayed at its next start (idempotent by request id)."
    )
