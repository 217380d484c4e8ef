"""Appeals: the person affected contests a decision; staff uphold or overturn it, with a reason.

Only the organization (or signed-in person) the decision was about may appeal it or read the
appeal; anyone else gets 404, as if it did not exist. The appeal text is the person's own
words; the content of the blocked message is kept only when they attach it *and* consent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from ..errors import Conflict, InvalidRequest, NotFound
from ..store.base import utcnow
from .pipeline import SafetyRuntime
from .tables import Appeal, ModerationLog

if TYPE_CHECKING:
    from ..hub import Hub
    from ..pipeline import Principal

__all__ = ["AppealView", "decide_appeal", "file_appeal", "get_appeal", "list_appeals"]

MAX_REASON = 4000
MAX_CONTENT = 32_000


@dataclass(frozen=True, slots=True)
class AppealView:
    id: str
    decision_id: str
    status: str
    reason: str
    categories: list[str]
    policy_version: str
    action: str
    created_at: datetime
    decided_at: datetime | None
    decision_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "appeal", "decision_id": self.decision_id, "status": self.status,
            "reason": self.reason, "categories": self.categories, "policy_version": self.policy_version,
            "action": self.action, "created_at": int(self.created_at.timestamp()),
            "decided_at": int(self.decided_at.timestamp()) if self.decided_at else None,
            "decision_reason": self.decision_reason,
        }


def _view(appeal: Appeal, entry: ModerationLog) -> AppealView:
    return AppealView(
        appeal.id, appeal.log_id, appeal.status, appeal.reason, list(entry.categories or []),
        entry.policy_version, entry.action, appeal.created_at, appeal.decided_at, appeal.decision_reason,
    )


def _owns(principal: Principal, org_id: int | None, user_id: int | None) -> bool:
    if principal.org_id is not None:
        return principal.org_id == org_id
    return principal.user_id is not None and principal.user_id == user_id


def file_appeal(
    hub: Hub, principal: Principal, decision_id: str, reason: str,
    content: str | None = None, consent: bool = False,
) -> AppealView:
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("reason: say why the decision is wrong", param="reason", code="invalid_value")
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason: at most {MAX_REASON} characters", param="reason", code="invalid_value")
    if content is not None and not consent:
        raise InvalidRequest(
            "content is kept only with your consent: set consent_to_store_content to true, or leave content out",
            param="content", code="consent_required",
        )
    if content is not None and len(content) > MAX_CONTENT:
        raise InvalidRequest(f"content: at most {MAX_CONTENT} characters", param="content", code="invalid_value")
    hub.services.get(SafetyRuntime).recorder.flush()  # a decision still in the write buffer can be appealed too
    with hub.db.session() as s:
        entry = s.get(ModerationLog, decision_id)
        if entry is None or not _owns(principal, entry.org_id, entry.user_id):
            raise NotFound(f"no moderation decision {decision_id}", param="decision_id")
        if s.scalars(select(Appeal.id).where(Appeal.log_id == decision_id)).first() is not None:
            raise Conflict(f"decision {decision_id} has already been appealed")
        appeal = Appeal(
            id="apl_" + secrets.token_hex(12), log_id=decision_id, principal=principal.label,
            org_id=principal.org_id, user_id=principal.user_id, reason=reason,
            consent=bool(consent and content is not None), content=content if consent else None,
            status="filed", created_at=utcnow(),
        )
        s.add(appeal)
        s.flush()
        view = _view(appeal, entry)
    hub.emit("appeal.filed", actor=principal.label, subject=view.id, decision_id=decision_id,
             categories=view.categories)
    return view


def get_appeal(hub: Hub, principal: Principal | None, appeal_id: str) -> AppealView:
    """The appeal; ``principal`` None means staff (the CLI), who may read every appeal."""
    with hub.db.session() as s:
        row = s.execute(
            select(Appeal, ModerationLog).join(ModerationLog, Appeal.log_id == ModerationLog.id)
            .where(Appeal.id == appeal_id)
        ).first()
        if row is None or (principal is not None and not _owns(principal, row[0].org_id, row[0].user_id)):
            raise NotFound(f"no appeal {appeal_id}")
        return _view(row[0], row[1])


def list_appeals(hub: Hub, status: str | None = "filed", limit: int = 100) -> list[AppealView]:
    with hub.db.session() as s:
        query = select(Appeal, ModerationLog).join(ModerationLog, Appeal.log_id == ModerationLog.id)
        if status:
            query = query.where(Appeal.status == status)
        rows = s.execute(query.order_by(Appeal.created_at).limit(limit)).all()
        return [_view(a, m) for a, m in rows]


def decide_appeal(
    hub: Hub, appeal_id: str, outcome: Literal["upheld", "overturned"], reason: str, staff: str
) -> AppealView:
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("a decision needs a reason the person can read", param="reason")
    with hub.db.session() as s:
        appeal = s.get(Appeal, appeal_id)
        if appeal is None:
            raise NotFound(f"no appeal {appeal_id}")
        if appeal.status != "filed":
            raise Conflict(f"appeal {appeal_id} was already decided ({appeal.status})")
        appeal.status = outcome
        appeal.decision_reason = reason
        appeal.decided_by = staff
        appeal.decided_at = utcnow()
        entry = s.get(ModerationLog, appeal.log_id)
        assert entry is not None
        s.flush()
        view = _view(appeal, entry)
    hub.emit(f"appeal.{outcome}", actor=staff, subject=appeal_id, categories=view.categories)
    return view
