"""What the safety layer writes down: policy versions, moderation decisions, published counts.

Decisions are buffered in memory and written in batches (a redaction happens on many requests;
one insert per request would put the database on the hot path). A block is written at once,
because the person may appeal it the next second. Content is never part of a log entry unless
the person consented (``content`` stays None otherwise).
"""

from __future__ import annotations

import difflib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..store.base import utcnow
from .tables import Appeal, ModerationLog, PolicyVersion

if TYPE_CHECKING:
    from ..hub import Hub
    from .policy import LoadedPolicy

__all__ = ["ModerationRecorder", "PendingDecision", "record_policy_version", "transparency_section"]

log = logging.getLogger("sovhub.safety")


@dataclass(slots=True)
class PendingDecision:
    direction: str
    action: str
    categories: list[str]
    clauses: list[str]
    policy_version: str
    lang: str | None
    principal: str
    org_id: int | None
    user_id: int | None
    content: str | None = None
    id: str = field(default_factory=lambda: "mod_" + secrets.token_hex(12))
    created_at: datetime = field(default_factory=utcnow)


class ModerationRecorder:
    def __init__(self, hub: Hub, batch: int = 200) -> None:
        self.hub = hub
        self.batch = batch
        self._pending: list[PendingDecision] = []
        self._lock = threading.Lock()

    def add(self, entry: PendingDecision) -> None:
        with self._lock:
            self._pending.append(entry)
            full = len(self._pending) >= self.batch
        if full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        with self.hub.db.session() as s:
            s.add_all(
                ModerationLog(
                    id=r.id, created_at=r.created_at, direction=r.direction, action=r.action,
                    categories=r.categories, clauses=r.clauses, policy_version=r.policy_version,
                    lang=r.lang, principal=r.principal, org_id=r.org_id, user_id=r.user_id, content=r.content,
                )
                for r in rows
            )
        return len(rows)


def record_policy_version(hub: Hub, loaded: LoadedPolicy) -> bool:
    """Store the policy if it differs from the last one in force; emit policy.loaded. True if new."""
    with hub.db.session() as s:
        last = s.scalars(select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1)).first()
        if last is not None and last.digest == loaded.digest:
            return False
        before = last.content if last is not None else ""
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True), loaded.text.splitlines(keepends=True),
                fromfile=f"policy {last.version}" if last is not None else "(none)",
                tofile=f"policy {loaded.version}",
            )
        )
        s.add(PolicyVersion(version=loaded.version, name=loaded.policy.name, digest=loaded.digest,
                            content=loaded.text, diff=diff))
    hub.emit("policy.loaded", subject=f"policy:{loaded.version}", version=loaded.version, digest=loaded.digest,
             source=loaded.source, diff=diff)
    return True


def transparency_section(hub: Hub, history: int = 10) -> dict[str, Any]:
    """Versions in force (with diffs), moderation actions and appeal outcomes, counts only."""
    with hub.db.session() as s:
        versions = s.scalars(select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(history)).all()
        actions = dict(
            s.execute(select(ModerationLog.action, func.count()).group_by(ModerationLog.action)).all()
        )
        by_category: dict[str, dict[str, int]] = {}
        for categories, action in s.execute(select(ModerationLog.categories, ModerationLog.action)):
            for c in categories or []:
                slot = by_category.setdefault(c, {})
                slot[action] = slot.get(action, 0) + 1
        appeals = dict(s.execute(select(Appeal.status, func.count()).group_by(Appeal.status)).all())
        appeal_categories: dict[str, dict[str, int]] = {}
        rows = s.execute(
            select(ModerationLog.categories, Appeal.status).join(Appeal, Appeal.log_id == ModerationLog.id)
        )
        for categories, status in rows:
            for c in categories or []:
                slot = appeal_categories.setdefault(c, {"filed": 0, "upheld": 0, "overturned": 0})
                slot["filed"] += 1
                if status in ("upheld", "overturned"):
                    slot[status] += 1
    return {
        "policy": {
            "in_force": versions[0].version if versions else None,
            "versions": [
                {"version": v.version, "name": v.name, "digest": v.digest,
                 "loaded_at": v.loaded_at.isoformat(), "diff": v.diff}
                for v in versions
            ],
        },
        "moderation": {"actions": actions, "by_category": by_category},
        "appeals": {
            "filed": sum(appeals.values()),
            "pending": appeals.get("filed", 0),
            "upheld": appeals.get("upheld", 0),
            "overturned": appeals.get("overturned", 0),
            "by_category": appeal_categories,
        },
    }
