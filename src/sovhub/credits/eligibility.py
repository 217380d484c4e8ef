"""Kinds of organization, for programmes open to some of them only (start-ups, research, public bodies).

Staff record an organization's kind (``sovhub programmes org-kind ORG KIND``, or its page in the
administration); a programme that names kinds grants only to organizations of one of them,
checked when an organization applies and again when staff grant. An organization whose kind
is not recorded is eligible for no such programme: it is refused with a message saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from ..errors import InvalidRequest, NotFound
from ..store.tables import Organization

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ORG_KINDS", "normalize_kind", "normalize_kinds", "set_org_kind"]

#: The kinds the hub knows, in the order pages list them.
ORG_KINDS = ("startup", "sme", "company", "research", "university", "public_body", "nonprofit")
_ALIASES = {"start_up": "startup", "public": "public_body", "research_institute": "research", "ngo": "nonprofit"}


def normalize_kind(text: str) -> str:
    """'Start-up' -> 'startup', 'public body' -> 'public_body'; an unknown kind is refused (400)."""
    key = "_".join(text.strip().lower().replace("-", " ").split())
    kind = _ALIASES.get(key, key)
    if kind not in ORG_KINDS:
        raise InvalidRequest(f"unknown kind of organization {text!r}; one of {', '.join(ORG_KINDS)}", param="kind")
    return kind


def normalize_kinds(kinds: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    for kind in kinds:
        value = normalize_kind(kind)
        if value not in out:
            out.append(value)
    return out


def set_org_kind(hub: Hub, org_name: str, kind: str | None, *, actor: str) -> str | None:
    """Record (or, with None, clear) what kind of organization `org_name` is; audited."""
    value = normalize_kind(kind) if kind else None
    with hub.db.session() as s:
        org = s.scalar(select(Organization).where(Organization.name == org_name))
        if org is None:
            raise NotFound(f"no organization {org_name!r}", param="org")
        before, org.kind = org.kind, value
        org_id = org.id
    hub.emit("organization.kind_set", actor=actor, subject=f"org:{org_id}", kind=value, before=before)
    return value
