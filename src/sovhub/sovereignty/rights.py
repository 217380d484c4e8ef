"""Data rights: export everything the hub holds about a person; erase it (crypto-shredding first).

Erasure order matters for crashes: the person's key-encryption key (a file outside the database)
and data key are destroyed first, which alone makes every copy of the content unreadable, database
backups included; the rows go next.
A crash in between leaves unreadable rows that a repeated `erase` removes. The audit entry
is committed before the call returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select

from ..accounts import KeyCache
from ..errors import Conflict, NotFound
from ..store.base import utcnow
from ..store.tables import Membership, Organization, User
from ..users import user_by_email
from .tables import AccessRequest, StoredConversation

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["erase_org", "erase_user", "export_org", "export_user", "resolve_user"]

EXPORT_FORMAT = "sovhub.user-export.v1"


def resolve_user(hub: Hub, user: str) -> int:
    """A user id from an id or an e-mail address (any case or width); a bare id is accepted even when
    the row is gone."""
    text = user.strip()
    if text.isdigit():
        return int(text)
    with hub.db.session() as s:
        found = user_by_email(s, text)
        if found is None:
            raise NotFound(f"no user with e-mail {text!r}")
        return int(found.id)


def _profile(hub: Hub, user_id: int) -> dict[str, Any] | None:
    with hub.db.session() as s:
        user = s.get(User, user_id)
        if user is None:
            return None
        orgs = s.execute(select(Organization.name, Membership.role).join(Membership,
                         Membership.org_id == Organization.id).where(Membership.user_id == user_id)).all()
    return {
        "id": user.id, "email": user.email, "display_name": user.display_name, "locale": user.locale,
        "is_staff": user.is_staff, "has_password": user.password_hash is not None,
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "memberships": [{"organization": name, "role": role} for name, role in orgs],
    }


def export_user(hub: Hub, user_id: int, *, actor: str = "system") -> dict[str, Any]:
    """Everything the hub holds about the person, from every plugin (JSON-able)."""
    from .audit import entries_about

    profile = _profile(hub, user_id)
    sections: dict[str, Any] = {}
    for group in hub.pm.hook.sovhub_export_user(hub=hub, user_id=user_id):
        sections.update(group or {})
    if profile is None and not any(sections.values()):
        raise NotFound(f"the hub holds no data about user {user_id}")
    hub.emit("user.exported", actor=actor, subject=f"user:{user_id}")
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "user": profile,
        **sections,
        "audit_entries": entries_about(hub, f"user:{user_id}"),
    }


def active_legal_hold(hub: Hub, user_id: int) -> AccessRequest | None:
    now = utcnow()
    with hub.db.session() as s:
        rows = s.scalars(select(AccessRequest).where(AccessRequest.user_id == user_id,
                                                     AccessRequest.legal_hold.is_(True)))
        return next((r for r in rows if r.notice_after is None or r.notice_after > now), None)


def erase_user(hub: Hub, user_id: int, *, actor: str = "system", replay: bool = False) -> dict[str, int]:
    """Crypto-shred the person's data key, let every plugin erase, delete their rows; audited.

    The erasure is written to the erasure journal (outside the database) before anything is touched,
    so a database backup restored later has it re-applied (`replay`: by `sovhub restore`, which
    neither journals it again nor asks about legal holds the backup still shows: the erasure was
    allowed when it happened).
    """
    from .crypto import ContentVault
    from .erasures import append_erasure

    if not replay:
        hold = active_legal_hold(hub, user_id)
        if hold is not None:
            raise Conflict(f"user {user_id} is under a recorded legal hold (access request {hold.id}); "
                           "erasure is deferred until the hold ends")
    vault = hub.services.get(ContentVault)
    if not replay:
        append_erasure(hub.settings, user_id)
    shredded = vault.destroy_key("user", user_id)
    hub.pm.hook.sovhub_erase_user(hub=hub, user_id=user_id)
    with hub.db.session() as s:
        user_rows = s.execute(delete(User).where(User.id == user_id))
    summary = {"data_keys_destroyed": int(shredded), "user_rows": int(getattr(user_rows, "rowcount", 0) or 0)}
    hub.emit("user.erasure_reapplied" if replay else "user.erased", actor=actor, subject=f"user:{user_id}", **summary)
    return summary


# --- this plugin's own part of the export and erasure (called through the hooks) ---


def export_own(hub: Hub, user_id: int) -> dict[str, Any]:
    from .crypto import ContentVault

    vault = hub.services.get(ContentVault)
    conversations = []
    with hub.db.session() as s:
        rows = list(s.scalars(select(StoredConversation).where(StoredConversation.user_id == user_id)
                              .order_by(StoredConversation.id)))
        requests = list(s.scalars(select(AccessRequest).where(AccessRequest.user_id == user_id)
                                  .order_by(AccessRequest.id)))
    for row in rows:
        content = vault.exported_json(row.owner_kind, row.owner_id, row.content)
        conversations.append({"request_id": row.request_id, "model": row.model, "backend": row.backend,
                              "created_at": row.created_at.isoformat(), "expires_at": row.expires_at.isoformat(),
                              **content})
    now = utcnow()
    shown = [r for r in requests if not r.legal_hold or (r.notice_after is not None and r.notice_after <= now)]
    return {
        "api_conversations": conversations,
        "staff_access": [
            {"id": r.id, "requested_by": r.requested_by, "reason": r.reason, "status": r.status,
             "approved_by": r.decided_by, "requested_at": r.created_at.isoformat(),
             "decided_at": r.decided_at.isoformat() if r.decided_at else None,
             "expires_at": r.expires_at.isoformat() if r.expires_at else None, "uses": r.uses}
            for r in shown
        ],
    }


def export_org_conversations(hub: Hub, org_id: int) -> dict[str, Any]:
    """The API conversations stored for the organization's keys, by organization id (and those sealed under its key)."""
    from .crypto import ContentVault

    vault = hub.services.get(ContentVault)
    with hub.db.session() as s:
        rows = list(s.scalars(select(StoredConversation).where(_conversations_of_org(org_id))
                              .order_by(StoredConversation.id)))
    out = []
    for row in rows:
        content = vault.exported_json(row.owner_kind, row.owner_id, row.content)
        out.append({"request_id": row.request_id, "model": row.model, "backend": row.backend, "key_id": row.key_id,
                    "user_id": row.user_id, "created_at": row.created_at.isoformat(),
                    "expires_at": row.expires_at.isoformat(), **content})
    return {"api_conversations": out}


def erase_org_conversations(hub: Hub, org_id: int) -> None:
    with hub.db.session() as s:
        s.execute(delete(StoredConversation).where(_conversations_of_org(org_id)))


def _conversations_of_org(org_id: int) -> Any:
    return or_(StoredConversation.org_id == org_id,
               and_(StoredConversation.owner_kind == "org", StoredConversation.owner_id == org_id))


def erase_own(hub: Hub, user_id: int) -> None:
    """API conversations and staff-access requests (an active legal hold has refused erasure before this)."""
    with hub.db.session() as s:
        s.execute(delete(StoredConversation).where(StoredConversation.user_id == user_id))
        s.execute(delete(AccessRequest).where(AccessRequest.user_id == user_id))


# --- organizations: their export and erasure reach every plugin through the org hooks ---

ORG_EXPORT_FORMAT = "sovhub.organization-export.v1"


def export_org(hub: Hub, org_id: int, *, actor: str = "system") -> dict[str, Any]:
    """Everything plugins hold for an organization (files, batches...), JSON-able."""
    with hub.db.session() as s:
        org = s.get(Organization, org_id)
        if org is None:
            raise NotFound(f"no organization {org_id}")
        name, created = org.name, org.created_at
    sections: dict[str, Any] = {}
    for group in hub.pm.hook.sovhub_export_org(hub=hub, org_id=org_id):
        sections.update(group or {})
    hub.emit("organization.exported", actor=actor, subject=f"org:{org_id}")
    return {"format": ORG_EXPORT_FORMAT, "exported_at": utcnow().isoformat(),
            "organization": {"id": org_id, "name": name, "created_at": created.isoformat()}, **sections}


def erase_org(hub: Hub, org_id: int, *, actor: str = "system") -> dict[str, int]:
    """Crypto-shred the organization's data key, let every plugin erase, delete the organization (its keys go
    with it); audited."""
    from .crypto import ContentVault

    with hub.db.session() as s:
        if s.get(Organization, org_id) is None:
            raise NotFound(f"no organization {org_id}")
    shredded = hub.services.get(ContentVault).destroy_key("org", org_id)
    hub.pm.hook.sovhub_erase_org(hub=hub, org_id=org_id)
    with hub.db.session() as s:
        rows = s.execute(delete(Organization).where(Organization.id == org_id))
    # Its keys went with it: none may still pass from this process's cache (other replicas: the event below).
    hub.services.get(KeyCache).clear()
    summary = {"data_keys_destroyed": int(shredded), "organization_rows": int(getattr(rows, "rowcount", 0) or 0)}
    hub.emit("organization.erased", actor=actor, subject=f"org:{org_id}", **summary)
    return summary
