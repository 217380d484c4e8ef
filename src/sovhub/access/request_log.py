"""The operators' view of traffic: the request log (metadata only) and usage totals per
organization, key or model, from the metered usage records.

No content is ever read here: a request's messages are reached only through the two-person
rule of :mod:`sovhub.sovereignty.staff_access`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select

from ..errors import InvalidRequest
from ..store.base import as_utc, utcnow
from ..store.tables import ApiKey, Organization, UsageRecord

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["MAX_DAYS", "MAX_ROWS", "LoggedRequest", "UsageTotal", "request_log", "usage_totals"]

MAX_ROWS = 500
MAX_DAYS = 366
Grouping = Literal["org", "key", "model"]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    id: int
    ts: datetime
    request_id: str
    organization: str | None
    key_prefix: str | None
    user_id: int | None
    endpoint: str
    model: str
    backend: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    status: int
    estimated: bool


@dataclass(frozen=True, slots=True)
class UsageTotal:
    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def request_log(
    hub: Hub, *, organization: str | None = None, model: str | None = None, failed_only: bool = False,
    before_id: int | None = None, limit: int = 100,
) -> list[LoggedRequest]:
    """The latest requests, newest first (page on with `before_id`): who, what model, tokens, status."""
    if not 1 <= limit <= MAX_ROWS:
        raise InvalidRequest(f"limit must be between 1 and {MAX_ROWS}", param="limit")
    stmt = (
        select(UsageRecord, Organization.name, ApiKey.prefix)
        .outerjoin(Organization, Organization.id == UsageRecord.org_id)
        .outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id)
        .order_by(UsageRecord.id.desc())
        .limit(limit)
    )
    if organization:
        stmt = stmt.where(Organization.name == organization)
    if model:
        stmt = stmt.where(UsageRecord.model == model)
    if failed_only:
        stmt = stmt.where(UsageRecord.status >= 400)
    if before_id is not None:
        stmt = stmt.where(UsageRecord.id < before_id)
    with hub.db.session() as s:
        rows = s.execute(stmt).all()
    return [
        LoggedRequest(r.id, as_utc(r.ts), r.request_id, org, prefix, r.user_id, r.endpoint, r.model, r.backend,
                      r.prompt_tokens, r.completion_tokens, r.latency_ms, r.status, bool(r.estimated))
        for r, org, prefix in rows
    ]


def usage_totals(hub: Hub, by: Grouping, days: int = 30, limit: int = 20) -> list[UsageTotal]:
    """Requests and tokens of the last `days` days per organization, API key or model; largest first."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidRequest(f"days must be between 1 and {MAX_DAYS}", param="days")
    since = utcnow() - timedelta(days=days)
    label: Any = {"org": Organization.name, "key": ApiKey.prefix, "model": UsageRecord.model}.get(by)
    if label is None:
        raise InvalidRequest("group by org, key or model", param="by")
    tokens = func.coalesce(func.sum(UsageRecord.prompt_tokens), 0) + func.coalesce(
        func.sum(UsageRecord.completion_tokens), 0)
    stmt = (
        select(label, func.count(), func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
               func.coalesce(func.sum(UsageRecord.completion_tokens), 0))
        .select_from(UsageRecord)
        .outerjoin(Organization, Organization.id == UsageRecord.org_id)
        .outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id)
        .where(UsageRecord.ts >= since)
        .group_by(label)
        .order_by(tokens.desc(), label)
        .limit(limit)
    )
    with hub.db.session() as s:
        rows = s.execute(stmt).all()
    return [UsageTotal(str(name) if name is not None else "", int(n), int(p), int(c)) for name, n, p, c in rows]
