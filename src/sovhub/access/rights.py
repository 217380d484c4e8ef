"""access's part of a person's export and erasure: their eID identities, the tier and quotas staff gave them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .tables import Identity, PersonAccess

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["erase_identities", "erase_person_access", "export_identities", "export_person_access"]


def export_identities(hub: Hub, user_id: int) -> dict[str, Any]:
    with hub.db.session() as s:
        rows = list(s.scalars(select(Identity).where(Identity.user_id == user_id).order_by(Identity.id)))
    return {"eid_identities": [
        {"idp": r.idp, "subject": r.subject, "level": r.level, "given_name": r.given_name,
         "family_name": r.family_name, "birthdate": r.birthdate, "created_at": r.created_at.isoformat(),
         "last_login_at": r.last_login_at.isoformat() if r.last_login_at else None}
        for r in rows
    ]}


def erase_identities(hub: Hub, user_id: int) -> None:
    """Delete the identities (subject, names, birth date); verifications keep only their outcome."""
    with hub.db.session() as s:
        s.execute(delete(Identity).where(Identity.user_id == user_id))


def export_person_access(hub: Hub, user_id: int) -> dict[str, Any]:
    """The tier and quotas staff set for the person (None when they have the defaults)."""
    with hub.db.session() as s:
        row = s.get(PersonAccess, user_id)
        if row is None:
            return {"access_profile": None}
        return {"access_profile": {"tier": row.tier, "limits": dict(row.limits or {}),
                                   "updated_at": row.updated_at.isoformat()}}


def erase_person_access(hub: Hub, user_id: int) -> None:
    # The user row's deletion cascades too; said here so erasure does not rest on the engine's foreign keys.
    with hub.db.session() as s:
        s.execute(delete(PersonAccess).where(PersonAccess.user_id == user_id))
