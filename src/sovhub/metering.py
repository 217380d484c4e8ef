"""Usage metering without a database write on the request's hot path.

Requests append a record to an in-memory buffer (O(1), no I/O); a background task writes the
buffer in batches every `usage_flush_interval_s`, and `close()` flushes the rest on graceful
shutdown. A failed write keeps the records for the next try rather than dropping them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert

from .batching import BatchWriter
from .store.base import utcnow
from .store.tables import UsageRecord

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Meter", "Usage"]

log = logging.getLogger("sovhub.metering")


@dataclass(slots=True)
class Usage:
    request_id: str
    endpoint: str
    model: str
    org_id: int | None
    key_id: int | None
    user_id: int | None = None
    backend: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    status: int = 200
    #: The backend reported no usage: the tokens were counted by the hub (`Backend.count_tokens`).
    estimated: bool = False
    #: The batch this request ran in; None for interactive requests.
    batch_id: str | None = None
    ts: datetime = field(default_factory=utcnow)
    #: Filled when the record is written (sovhub.energy.accountant), from the interval's measurements.
    energy_wh: float | None = None
    co2e_g: float | None = None
    renewable_share: float | None = None
    energy_method: str | None = None


_FIELDS = tuple(f.name for f in fields(Usage))


class Meter(BatchWriter[Usage]):
    name = "meter"

    def __init__(self, hub: Hub) -> None:
        super().__init__(interval=hub.settings.usage_flush_interval_s, batch_size=hub.settings.usage_flush_batch)
        self.hub = hub

    def record(self, usage: Usage) -> None:
        self.append(usage)

    def write(self, batch: list[Usage]) -> int:
        from .energy.accountant import EnergyAccountant

        if EnergyAccountant in self.hub.services:
            self.hub.services.get(EnergyAccountant).assign(batch)
        with self.hub.db.session() as s:
            # Plain field reads, not dataclasses.asdict (which deep-copies): this runs for every request.
            s.execute(insert(UsageRecord), [{f: getattr(u, f) for f in _FIELDS} for u in batch])
        return len(batch)
