"""Domain events: what happened, by whom, to what. Plugins observe them through `sovhub_event`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event"]


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    actor: str = "system"
    subject: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
