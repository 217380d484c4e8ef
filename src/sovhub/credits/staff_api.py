"""/hub/v1/admin/...: the fund office's API (programmes, grants, the review queue), for staff keys only.

A staff key holds the scope ``staff`` and is bound to a staff member; only the operator's CLI
makes one (``sovhub keys create --org NAME --staff EMAIL``), no key can mint one through
``/hub/v1/keys`` (:mod:`sovhub.accounts`). Each call re-reads the member (a person who lost
``is_staff`` is refused at once) and acts as them: the same domain functions as the CLI and the
admin pages, audited with ``user:<id>:<email>`` and the key's prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ..accounts import STAFF, require_scope, staff_of_key
from ..api.deps import CurrentPrincipal, HubDep
from ..hub import Hub
from ..members import add_member, remove_member
from ..pipeline import Principal
from .amounts import parse_credits, parse_share
from .applications import application_view, decide, list_applications
from .dashboards import add_partner_member, remove_partner_member
from .programmes import ProgrammeRules, create_programme, grant_credits, grant_view, staff_programme_list
from .tables import CreditProgramme

__all__ = ["router"]

router = APIRouter(prefix="/hub/v1/admin", tags=["hub"])

Credits = str | float | int
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


class PartnerShare(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    share: str | float | int = Field(description="Percent, up to two decimals; the shares sum to 100.")


class ProgrammeCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    budget: Credits = Field(description="Credits (up to six decimals).")
    partners: list[PartnerShare] = Field(min_length=1, max_length=50)
    description: str | None = Field(None, max_length=5000)
    opens_at: datetime | None = Field(None, description="ISO 8601; UTC when it names no zone.")
    closes_at: datetime | None = None
    require_verified: bool = False
    jurisdictions: list[str] = Field(default_factory=list, max_length=300)
    kinds: list[str] = Field(default_factory=list, max_length=20)
    max_grant: Credits | None = None
    grant_validity_days: int | None = Field(None, ge=1, le=36_500)
    models: list[str] = Field(default_factory=list, max_length=500)


class GrantCreate(BaseModel):
    organization: str | int = Field(description="The organization's name or id.")
    credits: Credits
    reason: str = Field(min_length=1, max_length=5000)
    expires_at: datetime | None = Field(None, description="Else the programme's grant validity.")


class Decision(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=5000, description="Shown to the applicant.")
    credits: Credits | None = Field(None, description="Approve only: grant less than asked.")


def _staff(hub: Hub, principal: Principal) -> tuple[int, str]:
    """(user id, audit label) of the staff member behind the calling staff key."""
    require_scope(principal, STAFF)
    user_id, email = staff_of_key(hub, principal.key_id)
    return user_id, f"user:{user_id}:{email} ({principal.label})"


def _utc(value: datetime | None) -> datetime | None:
    from ..store.base import as_utc

    return as_utc(value) if value is not None else None


@router.get("/programmes")
async def get_programmes(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """Every programme as the public sees it, with its budget, what is left to grant and its partners."""
    await anyio.to_thread.run_sync(_staff, hub, principal)
    return {"object": "list", "data": await anyio.to_thread.run_sync(staff_programme_list, hub)}


@router.post("/programmes", status_code=201)
async def post_programme(body: ProgrammeCreate, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    rules = ProgrammeRules(
        description=body.description, opens_at=_utc(body.opens_at), closes_at=_utc(body.closes_at),
        require_verified=body.require_verified, jurisdictions=tuple(body.jurisdictions), org_kinds=tuple(body.kinds),
        max_grant=parse_credits(body.max_grant, param="max_grant") if body.max_grant is not None else None,
        grant_validity_days=body.grant_validity_days, models=tuple(body.models),
    )
    budget = parse_credits(body.budget, param="budget")
    partners = [(p.name, parse_share(str(p.share), param="partners")) for p in body.partners]
    row = await anyio.to_thread.run_sync(lambda: create_programme(hub, body.name, budget, partners, rules,
                                                                  actor=actor))
    return next(p for p in await anyio.to_thread.run_sync(staff_programme_list, hub) if p["id"] == row.id)


@router.post("/programmes/{programme_id}/grants", status_code=201)
async def post_grant(programme_id: Id, body: GrantCreate, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    amount = parse_credits(body.credits, allow_zero=False)
    grant = await anyio.to_thread.run_sync(lambda: grant_credits(
        hub, programme_id, body.organization, amount, reason=body.reason, actor=actor,
        expires_at=_utc(body.expires_at)))
    return await anyio.to_thread.run_sync(_grant_view, hub, grant.id)


def _grant_view(hub: Hub, grant_id: int) -> dict[str, Any]:
    from ..store.tables import Organization
    from .tables import CreditGrant

    with hub.db.session() as s:
        grant = s.get(CreditGrant, grant_id)
        assert grant is not None
        programme = s.get(CreditProgramme, grant.programme_id)
        org = s.get(Organization, grant.org_id)
        assert programme is not None and org is not None
        return grant_view(grant, programme.name, org.name)


@router.get("/applications")
async def get_applications(
    hub: HubDep, principal: CurrentPrincipal,
    status: Literal["pending", "approved", "rejected"] | None = Query(
        None, description="Only applications in this state (the review queue: pending); all when omitted."),
) -> dict[str, Any]:
    await anyio.to_thread.run_sync(_staff, hub, principal)
    rows = await anyio.to_thread.run_sync(lambda: list_applications(hub, status=status))
    return {"object": "list", "data": rows}


@router.post("/applications/{application_id}/decision")
async def post_decision(application_id: Id, body: Decision, hub: HubDep,
                        principal: CurrentPrincipal) -> dict[str, Any]:
    """Approve (granting the credits asked, or `credits`) or reject, with a reason the applicant reads."""
    reviewer_id, _ = await anyio.to_thread.run_sync(_staff, hub, principal)
    if body.decision == "reject" and body.credits is not None:
        from ..errors import InvalidRequest

        raise InvalidRequest("credits are for an approval; a rejection grants nothing", param="credits")
    amount = parse_credits(body.credits, allow_zero=False) if body.credits is not None else None
    row = await anyio.to_thread.run_sync(lambda: decide(
        hub, application_id, "approved" if body.decision == "approve" else "rejected", reason=body.reason,
        reviewer_id=reviewer_id, amount=amount))
    return await anyio.to_thread.run_sync(_application_view, hub, row.id)


def _application_view(hub: Hub, application_id: int) -> dict[str, Any]:
    from ..store.tables import Organization
    from .tables import CreditApplication

    with hub.db.session() as s:
        row = s.get(CreditApplication, application_id)
        assert row is not None
        programme = s.get(CreditProgramme, row.programme_id)
        org = s.get(Organization, row.org_id)
        assert programme is not None and org is not None
        return application_view(row, programme.name, org.name)


class OrgKind(BaseModel):
    kind: str | None = Field(None, max_length=40, description="startup, sme, company, research, university, "
                                                              "public_body or nonprofit; null clears it.")


@router.put("/organizations/{org_name}/kind")
async def put_org_kind(org_name: Annotated[str, Path(min_length=1, max_length=120)], body: OrgKind, hub: HubDep,
                       principal: CurrentPrincipal) -> dict[str, Any]:
    """Record what kind of organization it is (programmes open to some kinds check it)."""
    from .eligibility import set_org_kind

    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    kind = await anyio.to_thread.run_sync(lambda: set_org_kind(hub, org_name, body.kind, actor=actor))
    return {"object": "organization.kind", "organization": org_name, "kind": kind}


class MemberRole(BaseModel):
    role: Literal["member", "admin"] = Field("member", description="admin: may also apply for credits and "
                                             "remove members.")


OrgName = Annotated[str, Path(min_length=1, max_length=120)]
Email = Annotated[str, Path(min_length=3, max_length=320)]


@router.put("/organizations/{org_name}/members/{email}")
async def put_member(org_name: OrgName, email: Email, body: MemberRole, hub: HubDep,
                     principal: CurrentPrincipal) -> dict[str, Any]:
    """Make the person with this e-mail a member of the organization, or change their role."""
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    await anyio.to_thread.run_sync(lambda: add_member(hub, org_name, email, body.role, actor=actor))
    return {"object": "organization.member", "organization": org_name, "email": email.strip().lower(),
            "role": body.role}


@router.delete("/organizations/{org_name}/members/{email}")
async def delete_member(org_name: OrgName, email: Email, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """Remove the person from the organization (409 last_admin for its last admin)."""
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    await anyio.to_thread.run_sync(lambda: remove_member(hub, org_name, email, actor=actor))
    return {"object": "organization.member", "organization": org_name, "email": email.strip().lower(),
            "deleted": True}


@router.put("/partners/{partner_id}/members/{email}")
async def put_partner_member(partner_id: Id, email: Email, hub: HubDep,
                             principal: CurrentPrincipal) -> dict[str, Any]:
    """Let the person read this partner's dashboard."""
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    await anyio.to_thread.run_sync(lambda: add_partner_member(hub, partner_id, email, actor=actor))
    return {"object": "partner.member", "partner": partner_id, "email": email.strip().lower()}


@router.delete("/partners/{partner_id}/members/{email}")
async def delete_partner_member(partner_id: Id, email: Email, hub: HubDep,
                                principal: CurrentPrincipal) -> dict[str, Any]:
    """The person no longer reads this partner's dashboard."""
    _, actor = await anyio.to_thread.run_sync(_staff, hub, principal)
    await anyio.to_thread.run_sync(lambda: remove_partner_member(hub, partner_id, email, actor=actor))
    return {"object": "partner.member", "partner": partner_id, "email": email.strip().lower(), "deleted": True}
