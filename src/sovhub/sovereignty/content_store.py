"""Stored API conversations: encrypted per organization, written in batches, purged when expired.

The interceptor's `after` only appends to an in-memory queue (no I/O on the hot path); a
background task encrypts and writes the queue in batches, like usage metering. A request with
`store: false`, or an organization with zero retention, stores no content (usage is metered by
the core either way). Content still queued at a `kill -9` is lost, never half-written: a
conversation is not acknowledged as stored to anyone.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from ..batching import BatchWriter
from ..errors import InvalidRequest
from ..store.base import utcnow
from .tables import OrgRetention, StoredConversation

if TYPE_CHECKING:
    from ..hub import Hub
    from ..pipeline import ChatContext, ChatResult, OutputVerdict

__all__ = ["ContentRecorder", "ConversationStore", "purge_expired", "retention_days", "set_retention"]

log = logging.getLogger("sovhub.sovereignty.content_store")
_MAX_QUEUE = 100_000
_RETENTION_CACHE_S = 30.0


@dataclass(slots=True)
class _Pending:
    request_id: str
    org_id: int | None
    key_id: int | None
    user_id: int | None
    model: str
    backend: str | None
    messages: list[dict[str, Any]]
    completion: str
    finish_reason: str | None
    created_at: datetime = field(default_factory=utcnow)


class ConversationStore(BatchWriter[_Pending]):
    name = "content-store"

    def __init__(self, hub: Hub) -> None:
        super().__init__(interval=hub.settings.sovereignty.content_flush_interval_s, max_pending=_MAX_QUEUE)
        self.hub = hub
        self._retention: dict[int, tuple[float, int]] = {}
        self.skipped_zero_retention = 0

    def enqueue(self, item: _Pending) -> None:
        self.append(item)

    def _days(self, org_id: int | None) -> int:
        if org_id is None:
            return self.hub.settings.sovereignty.retention_days
        cached = self._retention.get(org_id)
        if cached is None or time.monotonic() - cached[0] > _RETENTION_CACHE_S:
            cached = (time.monotonic(), retention_days(self.hub, org_id))
            self._retention[org_id] = cached
        return cached[1]

    def forget_retention(self) -> None:
        """Drop the cached retention of every organization: a policy changed here or on another replica."""
        self._retention = {}

    def write(self, batch: list[_Pending]) -> int:
        """Encrypt and insert (runs in a worker thread)."""
        from .crypto import ContentVault

        vault = self.hub.services.get(ContentVault)
        rows: list[dict[str, Any]] = []
        for item in batch:
            days = self._days(item.org_id)
            if days <= 0:
                self.skipped_zero_retention += 1
                continue
            kind, owner = ("org", item.org_id) if item.org_id is not None else ("user", item.user_id)
            assert owner is not None
            plaintext = json.dumps({"messages": item.messages, "completion": item.completion,
                                    "finish_reason": item.finish_reason}, ensure_ascii=False)
            rows.append(dict(
                request_id=item.request_id, owner_kind=kind, owner_id=owner, org_id=item.org_id,
                key_id=item.key_id, user_id=item.user_id, model=item.model, backend=item.backend,
                content=vault.encrypt(kind, owner, plaintext), created_at=item.created_at,
                expires_at=item.created_at + timedelta(days=days)))
        if rows:
            # One executemany (not the ORM's unit of work): this runs for every API exchange.
            with self.hub.db.session() as s:
                s.execute(insert(StoredConversation), rows)
        return len(rows)



class ContentRecorder:
    """A ChatInterceptor whose `after` queues the exchange for encrypted storage."""

    name = "sovereignty.content"
    checks_output = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def before(self, ctx: ChatContext) -> None:
        return None

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        return None

    async def after(self, ctx: ChatContext, result: ChatResult) -> None:
        p = ctx.principal
        if not ctx.store or not self.hub.settings.sovereignty.store_api_content:
            return
        if p.org_id is None and p.user_id is None:
            return
        self.hub.services.get(ConversationStore).enqueue(_Pending(
            request_id=ctx.request_id, org_id=p.org_id, key_id=p.key_id, user_id=p.user_id, model=ctx.model,
            backend=result.backend_name, messages=ctx.messages, completion=result.text,
            finish_reason=result.finish_reason))


# --- retention ---


def retention_days(hub: Hub, org_id: int) -> int:
    with hub.db.session() as s:
        row = s.get(OrgRetention, org_id)
    return row.retention_days if row is not None else hub.settings.sovereignty.retention_days


def set_retention(hub: Hub, org_name: str, days: int | None, *, actor: str = "cli") -> int | None:
    """Set an organization's retention (0 = zero retention); None returns it to the default."""
    from ..accounts import get_org

    if days is not None and not 0 <= days <= 36_500:
        raise InvalidRequest(f"retention days must be between 0 and 36500, got {days}", param="days")
    org = get_org(hub, org_name)
    with hub.db.session() as s:
        row = s.get(OrgRetention, org.id)
        if days is None:
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(OrgRetention(org_id=org.id, retention_days=days))
        else:
            row.retention_days, row.updated_at = days, utcnow()
    hub.emit("retention.set", actor=actor, subject=f"org:{org.id}", retention_days=days)
    return days


def purge_expired(hub: Hub, *, now: datetime | None = None, actor: str = "system") -> int:
    """Delete stored content past its expiry, and content of orgs that moved to zero retention."""
    now = now or utcnow()
    count = 0
    with hub.db.session() as s:
        result = s.execute(delete(StoredConversation).where(StoredConversation.expires_at <= now))
        count += int(getattr(result, "rowcount", 0) or 0)
        # An organization that shortened its retention (or chose zero) is honoured for content
        # already stored, not only for new content.
        for org_id, days in s.execute(select(OrgRetention.org_id, OrgRetention.retention_days)).all():
            result = s.execute(delete(StoredConversation).where(
                StoredConversation.org_id == org_id, StoredConversation.created_at <= now - timedelta(days=days)))
            count += int(getattr(result, "rowcount", 0) or 0)
    if count:
        hub.emit("retention.purged", actor=actor, subject="conversations", deleted=count)
    return count
