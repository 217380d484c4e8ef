"""safety's part of a person's and an organization's export and erasure: their moderation decisions and appeals.

Erasure deletes the appeals (their reasons and consented content are the person's words) and
keeps each moderation decision only as an anonymous count: no user, no principal, no content
(for an organization: no organization either).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from .tables import Appeal, ModerationLog

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ERASED_PRINCIPAL", "erase_moderation", "erase_org_moderation", "export_moderation",
           "export_org_moderation"]

ERASED_PRINCIPAL = "erased"


def export_moderation(hub: Hub, user_id: int) -> dict[str, Any]:
    with hub.db.session() as s:
        logs = list(s.scalars(select(ModerationLog).where(ModerationLog.user_id == user_id)
                              .order_by(ModerationLog.created_at)))
        appeals = list(s.scalars(select(Appeal).where(Appeal.user_id == user_id).order_by(Appeal.created_at)))
    return _exported(logs, appeals)


def export_org_moderation(hub: Hub, org_id: int) -> dict[str, Any]:
    """The decisions about the organization's requests and the appeals filed against them, by organization id."""
    with hub.db.session() as s:
        logs = list(s.scalars(select(ModerationLog).where(ModerationLog.org_id == org_id)
                              .order_by(ModerationLog.created_at)))
        appeals = list(s.scalars(select(Appeal).where(Appeal.org_id == org_id).order_by(Appeal.created_at)))
    return _exported(logs, appeals)


def _exported(logs: list[ModerationLog], appeals: list[Appeal]) -> dict[str, Any]:
    return {
        "moderation_decisions": [
            {"id": r.id, "created_at": r.created_at.isoformat(), "direction": r.direction, "action": r.action,
             "categories": r.categories, "clauses": r.clauses, "policy_version": r.policy_version,
             "lang": r.lang, "content": r.content}
            for r in logs
        ],
        "appeals": [
            {"id": a.id, "decision_id": a.log_id, "reason": a.reason, "consent": a.consent, "content": a.content,
             "status": a.status, "decision_reason": a.decision_reason, "created_at": a.created_at.isoformat(),
             "decided_at": a.decided_at.isoformat() if a.decided_at else None}
            for a in appeals
        ],
    }


def erase_org_moderation(hub: Hub, org_id: int) -> None:
    with hub.db.session() as s:
        s.execute(delete(Appeal).where(Appeal.org_id == org_id))
        s.execute(update(ModerationLog).where(ModerationLog.org_id == org_id)
                  .values(org_id=None, user_id=None, principal=ERASED_PRINCIPAL, content=None))


def erase_moderation(hub: Hub, user_id: int) -> None:
    with hub.db.session() as s:
        s.execute(delete(Appeal).where(Appeal.user_id == user_id))
        s.execute(update(ModerationLog).where(ModerationLog.user_id == user_id)
                  .values(user_id=None, principal=ERASED_PRINCIPAL, content=None))
