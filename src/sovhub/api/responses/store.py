"""Stored responses: sealed under their owner's data key, kept for the owner's retention, theirs only.

A response is stored when the request asked for it (``store``, the default), the operator keeps
API content (``sovereignty.store_api_content``) and the owner's retention is above zero; what is
stored is the response object, its input items and the conversation up to and with its answer
(what ``previous_response_id`` continues). Reads see only the caller's own responses (organization,
or person without one), never an expired one; anything else is "not found", so an id reveals
nothing. Erasing a person crypto-shreds their key first (sovereignty), then the rows go here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select, update

from ...errors import NotFound
from ...sovereignty.content_store import retention_days
from ...sovereignty.tables import OrgRetention
from ...store.base import as_utc, utcnow
from .tables import StoredResponse

if TYPE_CHECKING:
    from ...hub import Hub
    from ...pipeline import Principal

__all__ = ["ITEM_SEARCH", "ResponseStore", "StoredState"]

#: How many of the caller's latest stored responses an ``item_reference`` is looked for in.
ITEM_SEARCH = 200


@dataclass(slots=True)
class StoredState:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    #: A background response's stream events, as its run sent them (what a resumed stream replays).
    events: list[dict[str, Any]] = field(default_factory=list)


_RUNNING = ("queued", "in_progress")


def _plain(state: StoredState) -> str:
    return json.dumps({"response": state.response, "input_items": state.input_items, "messages": state.messages,
                       "events": state.events}, ensure_ascii=False)


def _owner(principal: Principal) -> tuple[str, int] | None:
    if principal.org_id is not None:
        return "org", principal.org_id
    if principal.user_id is not None:
        return "user", principal.user_id
    return None


class ResponseStore:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _days(self, principal: Principal) -> int:
        if principal.org_id is None:
            return self.hub.settings.sovereignty.retention_days
        return retention_days(self.hub, principal.org_id)

    def keeps(self, principal: Principal) -> bool:
        """Whether a response of this caller can be stored at all (operator policy, retention, owner)."""
        return (self.hub.settings.sovereignty.store_api_content and _owner(principal) is not None
                and self._days(principal) > 0)

    def save(self, principal: Principal, state: StoredState, *, previous_id: str | None, create: bool = True) -> bool:
        """Seal and write one response (a worker thread calls this); False when it may not be kept.

        ``create=False`` (a background run's later states) writes only over a row still there (not
        deleted meanwhile) and never a queued or running state over a cancelled one (a cancel won).
        """
        from ...sovereignty.crypto import ContentVault

        owner = _owner(principal)
        days = self._days(principal) if owner is not None else 0
        if owner is None or days <= 0 or not self.hub.settings.sovereignty.store_api_content:
            return False
        kind, owner_id = owner
        plaintext = _plain(state)
        created = utcnow()
        row = StoredResponse(
            id=state.response["id"], owner_kind=kind, owner_id=owner_id, org_id=principal.org_id,
            key_id=principal.key_id, user_id=principal.user_id, model=str(state.response.get("model")),
            status=str(state.response.get("status")), previous_response_id=previous_id,
            content=self.hub.services.get(ContentVault).encrypt(kind, owner_id, plaintext), created_at=created,
            expires_at=created + timedelta(days=days),
            heartbeat_at=created if state.response.get("status") in _RUNNING else None)
        with self.hub.db.session() as s:
            if not create:
                stored = s.scalar(select(StoredResponse.status).where(StoredResponse.id == row.id))
                if stored is None or (stored == "cancelled" and row.status in ("queued", "in_progress")):
                    return False
            s.merge(row)
        return True

    def _row(self, principal: Principal, response_id: str) -> StoredResponse:
        owner = _owner(principal)
        with self.hub.db.session() as s:
            row = s.get(StoredResponse, response_id)
        if (row is None or owner is None or (row.owner_kind, row.owner_id) != owner
                or as_utc(row.expires_at) <= utcnow()):
            raise NotFound(f"No response found with id '{response_id}'.", param="response_id")
        return row

    def load(self, principal: Principal, response_id: str) -> StoredState:
        from ...sovereignty.crypto import ContentVault

        row = self._row(principal, response_id)
        data = json.loads(self.hub.services.get(ContentVault).decrypt(row.owner_kind, row.owner_id, row.content))
        return StoredState(data["response"], data["input_items"], data["messages"], data.get("events") or [])

    def find_item(self, principal: Principal, item_id: str) -> dict[str, Any]:
        """An item (input or output) of one of the caller's stored responses, newest first; at most
        :data:`ITEM_SEARCH` responses are read (each is decrypted to look inside)."""
        from ...sovereignty.crypto import ContentVault

        owner = _owner(principal)
        if owner is None:
            raise NotFound(f"No item found with id '{item_id}'.")
        vault = self.hub.services.get(ContentVault)
        with self.hub.db.session() as s:
            rows = list(s.scalars(
                select(StoredResponse).where(StoredResponse.owner_kind == owner[0], StoredResponse.owner_id == owner[1],
                                             StoredResponse.expires_at > utcnow())
                .order_by(StoredResponse.created_at.desc()).limit(ITEM_SEARCH)))
        for row in rows:
            data = json.loads(vault.decrypt(row.owner_kind, row.owner_id, row.content))
            for item in [*data["input_items"], *data["response"]["output"]]:
                if item.get("id") == item_id:
                    return dict(item)
        raise NotFound(f"No item found with id '{item_id}' in your stored responses.")

    def status(self, response_id: str) -> str | None:
        """The stored status of a response (no owner check: the hub's own background runs ask)."""
        with self.hub.db.session() as s:
            return s.scalar(select(StoredResponse.status).where(StoredResponse.id == response_id))

    def mark_cancelled(self, principal: Principal, response_id: str) -> StoredState:
        """Set a queued or running background response to cancelled (the replica running it sees it)."""
        from ...sovereignty.crypto import ContentVault

        state = self.load(principal, response_id)
        if state.response["status"] not in ("queued", "in_progress"):
            return state
        state.response["status"] = "cancelled"
        row = self._row(principal, response_id)
        plaintext = _plain(state)
        sealed = self.hub.services.get(ContentVault).encrypt(row.owner_kind, row.owner_id, plaintext)
        with self.hub.db.session() as s:
            s.execute(update(StoredResponse).where(StoredResponse.id == response_id,
                                                   StoredResponse.status.in_(("queued", "in_progress")))
                      .values(status="cancelled", content=sealed))
        return self.load(principal, response_id)

    def fail_orphans(self) -> int:
        """Background responses left queued or running by a hub that stopped without ending them (killed):
        failed, so no client polls them for ever. Only safe where no other replica may be running them."""
        return self._fail(StoredResponse.status.in_(_RUNNING),
                          "the hub stopped while this response ran; create it again")

    def beat(self, response_ids: list[str], now: datetime | None = None) -> None:
        """The running replica's heartbeat for its background responses (still queued or running)."""
        if not response_ids:
            return
        with self.hub.db.session() as s:
            s.execute(update(StoredResponse).where(StoredResponse.id.in_(response_ids),
                                                   StoredResponse.status.in_(_RUNNING))
                      .values(heartbeat_at=now or utcnow()))

    def fail_stale(self, before: datetime, *, only: str | None = None, keep: frozenset[str] = frozenset()) -> int:
        """Background responses whose replica sent no heartbeat since `before` (it stopped): failed.
        `only` limits it to one response (a read); `keep` are this replica's own runs (never stale)."""
        where = StoredResponse.status.in_(_RUNNING) & (
            func.coalesce(StoredResponse.heartbeat_at, StoredResponse.created_at) < before)
        if only is not None:
            where = where & (StoredResponse.id == only)
        if keep:
            where = where & StoredResponse.id.not_in(keep)
        return self._fail(where, "the replica running this response stopped (its heartbeat is stale); create it again")

    def _fail(self, where: Any, message: str) -> int:
        from ...sovereignty.crypto import ContentVault

        vault = self.hub.services.get(ContentVault)
        with self.hub.db.session() as s:
            rows = list(s.scalars(select(StoredResponse).where(where)))
        failed = 0
        for row in rows:
            data = json.loads(vault.decrypt(row.owner_kind, row.owner_id, row.content))
            data["response"].update(status="failed", error={"code": "server_error", "message": message})
            sealed = vault.encrypt(row.owner_kind, row.owner_id, json.dumps(data, ensure_ascii=False))
            with self.hub.db.session() as s:
                # Only over the state read: a replica that beat or ended it meanwhile wins.
                result = s.execute(update(StoredResponse).where(
                    StoredResponse.id == row.id, StoredResponse.status == row.status,
                    StoredResponse.heartbeat_at.is_(None) if row.heartbeat_at is None
                    else StoredResponse.heartbeat_at == row.heartbeat_at)
                    .values(status="failed", content=sealed, heartbeat_at=None))
                failed += int(getattr(result, "rowcount", 0) or 0)
        return failed

    def delete(self, principal: Principal, response_id: str) -> None:
        row = self._row(principal, response_id)
        with self.hub.db.session() as s:
            s.execute(delete(StoredResponse).where(StoredResponse.id == row.id))

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete responses past their expiry, and those older than an organization's shortened retention."""
        now = now or utcnow()
        count = 0
        with self.hub.db.session() as s:
            result = s.execute(delete(StoredResponse).where(StoredResponse.expires_at <= now))
            count += int(getattr(result, "rowcount", 0) or 0)
            for org_id, days in s.execute(select(OrgRetention.org_id, OrgRetention.retention_days)).all():
                result = s.execute(delete(StoredResponse).where(
                    StoredResponse.org_id == org_id, StoredResponse.created_at <= now - timedelta(days=days)))
                count += int(getattr(result, "rowcount", 0) or 0)
        return count

    def export_user(self, user_id: int) -> list[dict[str, Any]]:
        return self._export(StoredResponse.user_id == user_id)

    def export_org(self, org_id: int) -> list[dict[str, Any]]:
        """Responses stored for the organization's keys (sealed under its key or, made by a person, theirs)."""
        return self._export(_of_org(org_id))

    def erase_org(self, org_id: int) -> None:
        with self.hub.db.session() as s:
            s.execute(delete(StoredResponse).where(_of_org(org_id)))

    def _export(self, where: Any) -> list[dict[str, Any]]:
        from ...sovereignty.crypto import ContentVault

        vault = self.hub.services.get(ContentVault)
        with self.hub.db.session() as s:
            rows = list(s.scalars(select(StoredResponse).where(where).order_by(StoredResponse.created_at)))
        out = []
        for row in rows:
            content = vault.exported_json(row.owner_kind, row.owner_id, row.content)
            out.append({"id": row.id, "model": row.model, "status": row.status,
                        "created_at": as_utc(row.created_at).isoformat(),
                        "expires_at": as_utc(row.expires_at).isoformat(), **content})
        return out

    def erase_user(self, user_id: int) -> None:
        with self.hub.db.session() as s:
            s.execute(delete(StoredResponse).where(StoredResponse.user_id == user_id))


def _of_org(org_id: int) -> Any:
    return or_(StoredResponse.org_id == org_id,
               and_(StoredResponse.owner_kind == "org", StoredResponse.owner_id == org_id))
