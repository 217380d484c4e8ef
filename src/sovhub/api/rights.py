"""The core's part of a person's and an organization's export and erasure: their metered usage.

Usage rows stay for the transparency counts (requests, tokens, energy, emissions); erasure removes
only their link to the person (user_id becomes NULL), or for an organization every link to it
(organization, key, person, batch): what is left is an anonymous count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from ..store.tables import UsageRecord

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["erase_org_usage", "erase_usage_link", "export_org_usage", "export_usage"]


def export_usage(hub: Hub, user_id: int) -> dict[str, Any]:
    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.id)))
    return {"usage": [
        {"ts": r.ts.isoformat(), "request_id": r.request_id, "endpoint": r.endpoint, "model": r.model,
         "backend": r.backend, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
         "status": r.status}
        for r in rows
    ]}


def export_org_usage(hub: Hub, org_id: int) -> dict[str, Any]:
    """Every metered request of the organization, batch lines included, with its energy and emissions."""
    with hub.db.session() as s:
        rows = list(s.scalars(select(UsageRecord).where(UsageRecord.org_id == org_id).order_by(UsageRecord.id)))
    return {"usage": [
        {"ts": r.ts.isoformat(), "request_id": r.request_id, "endpoint": r.endpoint, "model": r.model,
         "backend": r.backend, "key_id": r.key_id, "prompt_tokens": r.prompt_tokens,
         "completion_tokens": r.completion_tokens, "status": r.status, "batch_id": r.batch_id,
         "energy_wh": r.energy_wh, "co2e_g": r.co2e_g, "renewable_share": r.renewable_share,
         "energy_method": r.energy_method}
        for r in rows
    ]}


def erase_org_usage(hub: Hub, org_id: int) -> None:
    with hub.db.session() as s:
        s.execute(update(UsageRecord).where(UsageRecord.org_id == org_id).values(
            org_id=None, key_id=None, user_id=None, batch_id=None, batch_line_key=None))


def erase_usage_link(hub: Hub, user_id: int) -> None:
    with hub.db.session() as s:
        s.execute(update(UsageRecord).where(UsageRecord.user_id == user_id).values(user_id=None))
