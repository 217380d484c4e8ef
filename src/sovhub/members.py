"""Who belongs to an organization, and in which role: added, changed and removed (no HTTP here).

A ``member`` reads the organization's credits and notices in the web app; an ``admin`` also
commits it (applies for credits) and may remove its members. An organization that has an admin
always keeps one: removing or demoting its **last admin** is refused (409 ``last_admin``), with
the organization's row locked while admins are counted (on SQLite and PostgreSQL), so two admins
removing each other at once cannot both succeed. Every change is an event (``membership.set``, ``membership.removed``),
so the audit log records who did it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .errors import Conflict, InvalidRequest, NotFound
from .store.tables import Membership, Organization, User

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["MEMBER_ROLES", "add_member", "members_of", "memberships", "remove_member"]

#: A member reads the organization's credits and notices; an admin also commits it (applies for credits).
MEMBER_ROLES = ("member", "admin")


def _org(s: Session, ref: str | int) -> Organization:
    """The organization by name (str) or id (int), its row locked until the session ends.

    Locked by a write (a no-op UPDATE), not ``SELECT ... FOR UPDATE``: SQLite ignores FOR UPDATE and
    starts a transaction only at the first write, so only a write makes a second writer wait there
    until the first has committed, and then count what the first left (PostgreSQL locks the row
    either way)."""
    where = Organization.id == ref if isinstance(ref, int) else Organization.name == ref
    s.execute(update(Organization).where(where).values(name=Organization.name))
    org = s.scalar(select(Organization).where(where))
    if org is None:
        raise NotFound(f"no organization named {ref!r}", param="org")
    assert isinstance(org, Organization)
    return org


def _person(s: Session, ref: str | int) -> int:
    """A user id by e-mail address (str) or id (int)."""
    where = User.id == ref if isinstance(ref, int) else User.email == ref.strip().lower()
    user_id = s.scalar(select(User.id).where(where))
    if user_id is None:
        raise NotFound(f"no account {ref!r}", param="email")
    return int(user_id)


def _keep_an_admin(s: Session, org: Organization, user_id: int) -> None:
    """Refuse to take `user_id`'s admin role away when no other admin would be left (the org row is locked)."""
    others = s.scalar(select(func.count()).select_from(Membership).where(
        Membership.org_id == org.id, Membership.role == "admin", Membership.user_id != user_id))
    if not others:
        raise Conflict(f"this is the last admin of organization {org.name}: make another member admin first",
                       code="last_admin", param="email")


def add_member(hub: Hub, org_name: str, email: str, role: str = "member", *, actor: str = "cli") -> None:
    """Make the person with `email` a member of `org_name` (or change their role); audited."""
    if role not in MEMBER_ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(MEMBER_ROLES)}", param="role")
    with hub.db.session() as s:
        org = _org(s, org_name)
        user_id = _person(s, email)
        row = s.get(Membership, (user_id, org.id))
        if row is None:
            s.add(Membership(user_id=user_id, org_id=org.id, role=role))
        else:
            if row.role == "admin" and role != "admin":
                _keep_an_admin(s, org, user_id)
            row.role = role
        org_id = org.id
    hub.emit("membership.set", actor=actor, subject=f"org:{org_id}", user=user_id, role=role)


def remove_member(hub: Hub, org: str | int, person: str | int, *, actor: str) -> None:
    """Remove `person` (e-mail or user id) from `org` (name or id); not its last admin. Audited."""
    with hub.db.session() as s:
        row_org = _org(s, org)
        user_id = _person(s, person)
        row = s.get(Membership, (user_id, row_org.id))
        if row is None:
            raise NotFound(f"{person!r} is not a member of organization {row_org.name}", param="email",
                           code="not_member")
        if row.role == "admin":
            _keep_an_admin(s, row_org, user_id)
        role = row.role
        s.delete(row)
        org_id = row_org.id
    hub.emit("membership.removed", actor=actor, subject=f"org:{org_id}", user=user_id, role=role)


def members_of(hub: Hub, org_id: int) -> list[tuple[int, str, str]]:
    """(user id, e-mail, role) of every member of `org_id`, by e-mail."""
    with hub.db.session() as s:
        return [(int(i), str(e), str(r)) for i, e, r in s.execute(
            select(User.id, User.email, Membership.role).join(Membership, Membership.user_id == User.id)
            .where(Membership.org_id == org_id).order_by(User.email))]


def memberships(hub: Hub, user_id: int) -> list[tuple[int, str, str]]:
    """(org id, org name, role) of every organization `user_id` belongs to."""
    with hub.db.session() as s:
        return [(int(i), str(n), str(r)) for i, n, r in s.execute(
            select(Organization.id, Organization.name, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user_id).order_by(Organization.name))]
