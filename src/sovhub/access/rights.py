"""access's part of a person's export and erasure: their eID identities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .tables import Identity

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["erase_identities", "export_identities"]


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
