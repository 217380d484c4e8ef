"""The core's part of a person's export and erasure: their metered usage.

Usage rows stay for the organization's bill and the transparency counts; erasure removes only
their link to the person (user_id becomes NULL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from ..store.tables import UsageRecord

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["erase_usage_link", "export_usage"]


def export_usage(hub: Hub, user_id: int) -> dict[str, Any]:
    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.id)))
    return {"usage": [
        {"ts": r.ts.isoformat(), "request_id": r.request_id, "endpoint": r.endpoint, "model": r.model,
         "backend": r.backend, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
         "status": r.status}
        for r in rows
    ]}


def erase_usage_link(hub: Hub, user_id: int) -> None:
    with hub.db.session() as s:
        s.execute(update(UsageRecord).where(UsageRecord.user_id == user_id).values(user_id=None))
