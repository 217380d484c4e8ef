"""Applications: an organization asks a programme for credits; fund staff decide, with a reason.

Submitting checks the call window, the programme's eligibility rules and its largest grant; an
organization has at most one undecided application per programme. A decision needs a reason
(shown to the applicant) and a staff reviewer who is not a member of the applying organization.
Approving grants the amount asked (or less, when staff say so) through :func:`grant_credits`.
Every step is an audit event (``application.submitted``, ``application.decided``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update

from ..errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from ..store.base import as_utc, utcnow
from ..store.tables import Membership, Organization, User
from .amounts import as_number, format_credits
from .notices import add_notice
from .programmes import check_eligible, get_programme, grant_credits
from .tables import CreditApplication

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["MAX_PURPOSE", "application_view", "decide", "list_applications", "submit_application"]

MAX_PURPOSE = 5000


def submit_application(
    hub: Hub, programme_ref: str | int, org_id: int, *, purpose: str, amount: int, actor: str,
) -> CreditApplication:
    purpose = purpose.strip()
    if not purpose:
        raise InvalidRequest("an application needs a statement of purpose", param="purpose")
    if len(purpose) > MAX_PURPOSE:
        raise InvalidRequest(f"the statement of purpose is limited to {MAX_PURPOSE} characters", param="purpose")
    if amount <= 0:
        raise InvalidRequest("ask for more than 0 credits", param="credits")
    now = utcnow()
    with hub.db.session() as s:
        programme = get_programme(s, programme_ref)
        if programme.opens_at is not None and now < as_utc(programme.opens_at):
            raise Conflict(f"the call of programme {programme.name} opens on {programme.opens_at:%Y-%m-%d}",
                           code="call_not_open")
        if programme.closes_at is not None and now >= as_utc(programme.closes_at):
            raise Conflict(f"the call of programme {programme.name} closed on {programme.closes_at:%Y-%m-%d}",
                           code="call_closed")
        check_eligible(hub, s, programme, org_id)
        if programme.max_grant is not None and amount > programme.max_grant:
            raise InvalidRequest(f"programme {programme.name} grants at most {format_credits(programme.max_grant)} "
                                 "credits", param="credits", code="grant_too_large")
        open_one = s.scalar(select(CreditApplication.id).where(
            CreditApplication.programme_id == programme.id, CreditApplication.org_id == org_id,
            CreditApplication.status == "pending"))
        if open_one is not None:
            raise Conflict(f"this organization's application {open_one} to programme {programme.name} is still "
                           "waiting for a decision", code="application_pending")
        row = CreditApplication(programme_id=programme.id, org_id=org_id, purpose=purpose, amount=amount,
                                status="pending", applied_by=actor)
        s.add(row)
        s.flush()
        programme_name = programme.name
    hub.emit("application.submitted", actor=actor, subject=f"org:{org_id}", application=row.id,
             programme=programme_name, credits=format_credits(amount))
    return row


def decide(
    hub: Hub, application_id: int, decision: Literal["approved", "rejected"], *, reason: str, reviewer_id: int,
    amount: int | None = None,
) -> CreditApplication:
    """Decide an application as staff member `reviewer_id` (a user with is_staff)."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("a decision needs a reason; the applicant reads it", param="reason")
    with hub.db.session() as s:
        row = s.get(CreditApplication, application_id)
        if row is None:
            raise NotFound(f"no application {application_id}", param="application")
        reviewer = s.get(User, reviewer_id)
        if reviewer is None or not reviewer.is_staff:
            raise PermissionDenied("only fund staff decide applications")
        member = s.scalar(select(Membership.org_id).where(Membership.user_id == reviewer_id,
                                                          Membership.org_id == row.org_id))
        if member is not None:
            raise PermissionDenied("a reviewer cannot decide an application of their own organization",
                                   code="conflict_of_interest")
        if row.status != "pending":
            raise Conflict(f"application {application_id} was already {row.status}", code="already_decided")
        org_id, programme_id, asked = row.org_id, row.programme_id, row.amount
        programme_name = get_programme(s, programme_id).name
        reviewer_label = f"user:{reviewer.id}:{reviewer.email}"
        if decision == "approved" and amount is not None and not 0 < amount <= asked:
            raise InvalidRequest("grant more than 0 and at most the amount asked", param="credits")
        # Claimed in one conditional update: of two reviewers deciding at once, one wins, one grant is made.
        claimed = s.execute(update(CreditApplication).where(CreditApplication.id == application_id,
                                                            CreditApplication.status == "pending")
                            .values(status="deciding"))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"application {application_id} is being decided by someone else", code="already_decided")
    granted = None
    try:
        if decision == "approved":
            granted = grant_credits(hub, programme_id, org_id, asked if amount is None else amount, reason=reason,
                                    actor=reviewer_label, application_id=application_id)
    except BaseException:
        with hub.db.session() as s:
            s.execute(update(CreditApplication).where(CreditApplication.id == application_id)
                      .values(status="pending"))
        raise
    with hub.db.session() as s:
        row = s.get(CreditApplication, application_id)
        assert row is not None
        row.status, row.reason, row.decided_by, row.decided_by_user_id = decision, reason, reviewer_label, reviewer_id
        row.decided_at = utcnow()
        row.grant_id = granted.id if granted is not None else None
        # The applicant's members read it in their own language (the web app translates the notice).
        add_notice(s, org_id, f"application_{decision}", application_id=application_id, grant_id=row.grant_id,
                   programme=programme_name, reason=reason, asked=as_number(asked),
                   credits=as_number(granted.amount) if granted is not None else None)
    hub.emit("application.decided", actor=reviewer_label, subject=f"org:{org_id}", application=application_id,
             decision=decision, reason=reason, grant=row.grant_id)
    return row


def application_view(row: CreditApplication, programme: str, organization: str | None = None) -> dict[str, Any]:
    return {"id": row.id, "object": "programme.application", "programme": programme, "organization": organization,
            "purpose": row.purpose, "credits": as_number(row.amount), "status": row.status, "reason": row.reason,
            "grant": row.grant_id, "created_at": as_utc(row.created_at).isoformat(),
            "decided_at": as_utc(row.decided_at).isoformat() if row.decided_at else None}


def list_applications(hub: Hub, *, org_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
    from .tables import CreditProgramme

    with hub.db.session() as s:
        query = (select(CreditApplication, CreditProgramme.name, Organization.name)
                 .join(CreditProgramme, CreditProgramme.id == CreditApplication.programme_id)
                 .join(Organization, Organization.id == CreditApplication.org_id)
                 .order_by(CreditApplication.id))
        if org_id is not None:
            query = query.where(CreditApplication.org_id == org_id)
        if status is not None:
            query = query.where(CreditApplication.status == status)
        return [application_view(a, p, o) for a, p, o in s.execute(query)]
