"""Verified organizations: request, representative's eID proof, registry check, decision, revocation.

1. An admin of the organization requests verification (country, registry number, legal name).
   The hub answers with a one-time link for the legal representative.
2. The representative opens the link and signs in with national eID at assurance level high.
3. The registry lookup checks the number, status, legal name and that the representative is
   listed: by the national person identifier where the registry and the eID both carry one, else
   by name AND birth date (a name alone never approves: namesakes exist). All consistent ->
   approved at once; anything else -> queued for staff review, with each problem spelled out.
   A registry number belongs to one organization: once one is verified with it, a request from
   another organization naming it is refused (409 ``registry_number_taken``), and no approval,
   automatic or by staff, gives it to a second one (a unique constraint backs the check).
   One person verifies at most one organization per ``access.verification_cooldown_days``
   (a refusal names the date from which it is possible).
4. Staff approve or revoke with a reason (`sovhub orgs verify|revoke-verification`); every
   decision is an event, so the audit log records it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, InvalidRequest, NotFound
from ..store.base import utcnow
from ..store.tables import Organization
from .registry import OrgRegistry, normalize_name, normalize_number
from .state import AccessState
from .tables import Identity, OrgAccess, Verification

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..hub import Hub

__all__ = [
    "attach_representative", "reject_verification", "request_verification", "revoke_verification",
    "staff_verify", "verification_queue", "verification_states", "verification_status",
]

AWAITING, IN_REVIEW, APPROVED = "awaiting_representative", "in_review", "approved"
REJECTED, REVOKED, SUPERSEDED = "rejected", "revoked", "superseded"
OPEN_STATES = (AWAITING, IN_REVIEW)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _claim(country: str, number: str) -> tuple[str, str] | None:
    """The (country, number) a verification claims; None for a staff decision made without one."""
    country, number = country.strip().upper(), normalize_number(number)
    return (country, number) if number and country != "-" else None


def _holder(s: Session, claim: tuple[str, str] | None, org_id: int) -> str | None:
    """The name of another organization verified with this registry number, if any."""
    if claim is None:
        return None
    return s.scalar(
        select(Organization.name).join(OrgAccess, OrgAccess.org_id == Organization.id)
        .where(OrgAccess.registry_country == claim[0], OrgAccess.registry_number == claim[1],
               OrgAccess.org_id != org_id)
    )


def _taken(claim: tuple[str, str]) -> Conflict:
    # The holder is not named: a request must not reveal which tenant verified with a number.
    return Conflict(
        f"registry number {claim[1]} ({claim[0]}) already belongs to another verified organization on this hub; "
        "a registry number verifies one organization - if it is your company's, contact the hub's operators",
        param="registry_number", code="registry_number_taken",
    )


def _set_verified(s: Session, org_id: int, verification: Verification | None, verified: bool) -> None:
    row = s.get(OrgAccess, org_id) or OrgAccess(org_id=org_id, limits={}, tiers=[])
    s.add(row)
    claim = _claim(verification.country, verification.registry_number) if verified and verification else None
    holder = _holder(s, claim, org_id)
    if claim is not None and holder is not None:
        raise _taken(claim)
    row.verified_at = utcnow() if verified else None
    row.verification_id = verification.id if verified and verification else None
    row.registry_country, row.registry_number = claim if claim else (None, None)
    row.updated_at = utcnow()
    try:
        s.flush()
    except IntegrityError as exc:  # another organization claimed it between the check and this write
        assert claim is not None
        raise _taken(claim) from exc


def _latest(s: Session, org_id: int) -> Verification | None:
    return s.scalar(
        select(Verification).where(Verification.org_id == org_id).order_by(Verification.id.desc()).limit(1)
    )


def request_verification(
    hub: Hub, org_id: int, *, country: str, registry_number: str, legal_name: str, actor: str
) -> tuple[Verification, str]:
    """Start (or restart) a verification; returns it and the representative's one-time token."""
    country, registry_number, legal_name = country.strip().upper(), registry_number.strip(), legal_name.strip()
    if not (2 <= len(country) <= 8) or not registry_number or not legal_name:
        raise InvalidRequest("country (ISO code), registry_number and legal_name are required", param="country")
    claim = _claim(country, registry_number)
    if claim is None:
        raise InvalidRequest("registry_number needs at least one letter or digit", param="registry_number")
    token = secrets.token_urlsafe(32)
    with hub.db.session() as s:
        profile = s.get(OrgAccess, org_id)
        if profile is not None and profile.verified_at is not None:
            raise Conflict("this organization is already verified")
        if _holder(s, claim, org_id) is not None:
            raise _taken(claim)
        for old in s.scalars(
            select(Verification).where(Verification.org_id == org_id, Verification.status.in_(OPEN_STATES))
        ):
            old.status, old.token_hash, old.updated_at = SUPERSEDED, None, utcnow()
        row = Verification(
            org_id=org_id, status=AWAITING, country=country, registry_number=registry_number,
            legal_name=legal_name, requested_by=actor, token_hash=_hash(token), registry_result={},
            problems=["the legal representative has not yet confirmed with national eID at assurance level high"],
        )
        s.add(row)
        s.flush()
    hub.emit("org.verification_requested", actor=actor, subject=f"org:{org_id}", verification=row.id,
             country=country, registry_number=registry_number)
    return row, token


def attach_representative(hub: Hub, token: str, identity_id: int) -> Verification:
    """The representative signed in through eID: check the level, then decide."""
    with hub.db.session() as s:
        row = s.scalar(select(Verification).where(Verification.token_hash == _hash(token)))
        if row is None or row.status != AWAITING:
            raise NotFound("this verification link is unknown, used or superseded; ask your admin for a new one")
        identity = s.get(Identity, identity_id)
        assert identity is not None
        row.identity_id = identity.id
        row.representative_name = _full_name(identity) or None
        row.representative_level = identity.level
        row.updated_at = utcnow()
        if identity.level != "high":
            row.problems = [
                f"the legal representative signed in at assurance level {identity.level or 'unknown'}; "
                "level high is required - open the link again and sign in with a high-assurance eID means"
            ]
            return row
        row.token_hash = None  # one-time
        _decide(hub, s, row, identity)
    event = "org.verified" if row.status == APPROVED else f"org.verification_{row.status}"
    hub.emit(event, actor="system", subject=f"org:{row.org_id}", verification=row.id, problems=row.problems,
             automatic=True)
    if row.status == APPROVED:
        hub.services.get(AccessState).load()
    return row


def _full_name(identity: Identity) -> str:
    return " ".join(p for p in (identity.given_name, identity.family_name) if p)


def _decide(hub: Hub, s: Session, row: Verification, identity: Identity) -> None:
    cooldown = hub.settings.access.verification_cooldown_days
    since = utcnow() - timedelta(days=cooldown)
    previous = s.execute(
        select(Verification, Organization.name)
        .join(Organization, Organization.id == Verification.org_id)
        .join(Identity, Identity.id == Verification.identity_id)
        .where(Identity.idp == identity.idp, Identity.subject == identity.subject,
               Verification.status == APPROVED, Verification.org_id != row.org_id)
        .order_by(Verification.decided_at.desc())
        .limit(1)
    ).first()
    decided_at = previous[0].decided_at if previous else None
    if previous and decided_at is not None and decided_at > since:
        until = (decided_at + timedelta(days=cooldown)).date().isoformat()
        row.status, row.decided_at, row.decided_by = REJECTED, utcnow(), "system"
        row.problems = [
            f"this person verified organization {previous[1]!r} on {decided_at.date().isoformat()}; one person "
            f"may verify one organization per {cooldown} days - another legal representative may verify now, "
            f"or retry from {until}"
        ]
        return
    problems: list[str] = []
    registry = hub.services.get(OrgRegistry).source
    entry = registry.lookup(row.country, row.registry_number) if registry is not None else None
    if registry is None:
        problems.append("no company registry is connected to this hub; staff will check the registry by hand")
    elif entry is None:
        problems.append(f"registry number {row.registry_number} was not found in the {row.country} registry")
    else:
        row.registry_result = entry.as_dict()
        if entry.status.lower() != "active":
            problems.append(f"the registry lists the organization as {entry.status!r}, not active")
        if normalize_name(entry.legal_name) != normalize_name(row.legal_name):
            problems.append(f"legal name {row.legal_name!r} differs from the registry's {entry.legal_name!r}")
        if not any(rep.matches(_full_name(identity), identity.birthdate, identity.person_id)
                   for rep in entry.representatives):
            problems.append(
                "the person who signed in is not listed as a legal representative in the registry "
                "(compared by national person identifier, else by name and birth date)"
            )
    claim = _claim(row.country, row.registry_number)
    holder = _holder(s, claim, row.org_id)
    if claim is not None and holder is not None:
        problems.append(f"registry number {claim[1]} already belongs to the verified organization {holder!r}")
    row.problems, row.updated_at = problems, utcnow()
    if problems:
        row.status = IN_REVIEW
        return
    row.status, row.decided_at, row.decided_by = APPROVED, utcnow(), "system"
    row.reason = "registry and eID consistent"
    _set_verified(s, row.org_id, row, True)


def staff_verify(hub: Hub, org_id: int, *, reason: str, actor: str) -> Verification:
    """Approve by staff decision: the open request if any, else a record of the decision."""
    if not reason.strip():
        raise InvalidRequest("a reason is required", param="reason")
    with hub.db.session() as s:
        row = _latest(s, org_id)
        if row is None or row.status not in OPEN_STATES:
            row = Verification(org_id=org_id, country="-", registry_number="-", legal_name="-",
                               requested_by=actor, registry_result={}, problems=[], status=APPROVED)
            s.add(row)
        row.status, row.reason, row.decided_by, row.decided_at = APPROVED, reason, actor, utcnow()
        row.token_hash, row.problems, row.updated_at = None, [], utcnow()
        s.flush()
        _set_verified(s, org_id, row, True)
    hub.services.get(AccessState).load()
    hub.emit("org.verified", actor=actor, subject=f"org:{org_id}", verification=row.id, reason=reason)
    return row


def reject_verification(hub: Hub, org_id: int, *, reason: str, actor: str) -> Verification:
    if not reason.strip():
        raise InvalidRequest("a reason is required", param="reason")
    with hub.db.session() as s:
        row = _latest(s, org_id)
        if row is None or row.status not in OPEN_STATES:
            raise NotFound("this organization has no open verification request")
        row.status, row.reason, row.decided_by, row.decided_at = REJECTED, reason, actor, utcnow()
        row.token_hash, row.updated_at = None, utcnow()
    hub.emit("org.verification_rejected", actor=actor, subject=f"org:{org_id}", verification=row.id, reason=reason)
    return row


def revoke_verification(hub: Hub, org_id: int, *, reason: str, actor: str) -> Verification:
    if not reason.strip():
        raise InvalidRequest("a reason is required", param="reason")
    with hub.db.session() as s:
        profile = s.get(OrgAccess, org_id)
        if profile is None or profile.verified_at is None:
            raise Conflict("this organization is not verified")
        row = s.get(Verification, profile.verification_id) if profile.verification_id else None
        if row is None:
            row = Verification(org_id=org_id, country="-", registry_number="-", legal_name="-",
                               requested_by=actor, registry_result={}, problems=[], status=REVOKED)
            s.add(row)
        row.status, row.reason, row.decided_by, row.decided_at, row.updated_at = (
            REVOKED, reason, actor, utcnow(), utcnow())
        s.flush()
        _set_verified(s, org_id, None, False)  # also releases the registry number
    hub.services.get(AccessState).load()
    hub.emit("org.verification_revoked", actor=actor, subject=f"org:{org_id}", verification=row.id, reason=reason)
    return row


_NEXT = {
    None: ["An administrator requests verification: POST /hub/v1/organization/verification with "
           "country, registry_number and legal_name."],
    AWAITING: ["The legal representative opens the link the request returned and signs in with national eID "
               "at assurance level high."],
    IN_REVIEW: ["Staff are reviewing the request; nothing to do unless a problem below is yours to fix, "
                "in which case submit a corrected request (POST again)."],
    APPROVED: [],
    REJECTED: ["Fix the problems below and request again (POST /hub/v1/organization/verification)."],
    REVOKED: ["Verification was revoked (see reason); request again once resolved."],
}


def verification_status(hub: Hub, org_id: int) -> dict[str, Any]:
    """What the status endpoint returns: state, what is missing, how to proceed. Free of charge."""
    with hub.db.session() as s:
        profile = s.get(OrgAccess, org_id)
        row = _latest(s, org_id)  # superseded rows are never the latest: their successor is newer
    verified = profile is not None and profile.verified_at is not None
    state = row.status if row is not None else None
    status = _public_status(verified, state)
    return {
        "object": "organization.verification",
        "status": status,
        "verified": verified,
        "verified_at": _iso(profile.verified_at if profile else None),
        "missing": [] if verified else (list(row.problems or []) if row else ["verification not requested"]),
        "next_steps": [] if verified else _NEXT.get(state, _NEXT[None]),
        "can_retry": not verified and state not in (AWAITING, IN_REVIEW),
        "request": None if row is None else {
            "id": row.id, "status": row.status, "country": row.country, "registry_number": row.registry_number,
            "legal_name": row.legal_name, "representative_level": row.representative_level,
            "reason": row.reason, "created_at": _iso(row.created_at), "decided_at": _iso(row.decided_at),
        },
    }


def _public_status(verified: bool, state: str | None) -> str:
    if verified:
        return "verified"
    # An approval whose verification was since cleared reads as unverified, not approved.
    return "unverified" if state in (None, APPROVED) else state


def verification_states(hub: Hub) -> dict[int, str]:
    """Every organization's public status (as in :func:`verification_status`), in three queries."""
    with hub.db.session() as s:
        verified = set(s.scalars(select(OrgAccess.org_id).where(OrgAccess.verified_at.is_not(None))))
        latest = select(func.max(Verification.id)).group_by(Verification.org_id)
        rows = s.execute(select(Verification.org_id, Verification.status).where(Verification.id.in_(latest)))
        states: dict[int, str] = {org_id: status for org_id, status in rows}
        org_ids = list(s.scalars(select(Organization.id)))
    return {org_id: _public_status(org_id in verified, states.get(org_id)) for org_id in org_ids}


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def verification_queue(hub: Hub) -> list[dict[str, Any]]:
    """Requests waiting for staff, oldest first (for the web admin)."""
    with hub.db.session() as s:
        rows = s.execute(
            select(Verification, Organization.name)
            .join(Organization, Organization.id == Verification.org_id)
            .where(Verification.status == IN_REVIEW)
            .order_by(Verification.created_at)
        ).all()
    return [
        {"id": v.id, "org_id": v.org_id, "organization": name, "country": v.country,
         "registry_number": v.registry_number, "legal_name": v.legal_name,
         "representative_name": v.representative_name, "representative_level": v.representative_level,
         "registry_result": v.registry_result, "problems": v.problems, "requested_by": v.requested_by,
         "created_at": _iso(v.created_at)}
        for v, name in rows
    ]
