"""Programmes and grants: fund staff create a programme funded by partners, then grant its credits.

Money moves only through the ledger: creating a programme posts each partner's part of the
budget (split by shares, largest remainder) from the partner's account to the programme's pool;
a grant moves credits from the pool to the grant's own account, which usage then spends. The
pool cannot be overdrawn, so grants never exceed what the partners put in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from ..store.base import as_utc, utcnow
from ..store.tables import Organization
from .amounts import SHARE_WHOLE, as_number, format_credits, split_by_shares
from .eligibility import normalize_kinds
from .ledger import Entry, Ledger, LedgerRefused
from .tables import CreditGrant, CreditPartner, CreditProgramme, ProgrammePartner

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..hub import Hub

__all__ = ["ProgrammeRules", "create_programme", "get_programme", "grant_credits", "grant_view", "programme_accounts",
           "programme_list", "staff_programme_list"]


@dataclass(frozen=True, slots=True)
class ProgrammeRules:
    description: str | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    require_verified: bool = False
    jurisdictions: tuple[str, ...] = ()
    org_kinds: tuple[str, ...] = ()
    max_grant: int | None = None
    grant_validity_days: int | None = None
    models: tuple[str, ...] = ()


def programme_accounts(ledger: Ledger, s: Session, programme: CreditProgramme) -> tuple[int, int]:
    """(pool, usage) account ids of a programme."""
    pool = ledger.account(s, "programme", programme.id, f"programme {programme.name}: pool", no_overdraft=True)
    usage = ledger.account(s, "usage", programme.id, f"programme {programme.name}: usage", no_overdraft=False)
    return pool, usage


def get_programme(s: Session, ref: str | int) -> CreditProgramme:
    query = select(CreditProgramme)
    if isinstance(ref, int) or str(ref).isdigit():
        query = query.where(CreditProgramme.id == int(ref))
    else:
        query = query.where(CreditProgramme.name == ref)
    row = s.scalar(query)
    if row is None:
        raise NotFound(f"no programme {ref!r}", param="programme")
    return row


def create_programme(
    hub: Hub, name: str, budget: int, partners: Sequence[tuple[str, int]], rules: ProgrammeRules, *, actor: str,
) -> CreditProgramme:
    """Create a programme and post its budget from its partners (shares in hundredths of a percent)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a programme needs a name of 1 to 200 characters", param="name")
    if budget <= 0:
        raise InvalidRequest("a programme's budget must be more than 0 credits", param="budget")
    names = [p.strip() for p, _ in partners]
    if not partners:
        raise InvalidRequest("a programme needs at least one partner (--partner NAME=SHARE)", param="partners")
    if len(set(names)) != len(names) or any(not n for n in names):
        raise InvalidRequest("each partner is named once, with a name", param="partners")
    total = sum(share for _, share in partners)
    if total != SHARE_WHOLE:
        raise InvalidRequest(f"partners' shares must sum to 100%, they sum to {total / 100:g}%", param="partners")
    if rules.opens_at and rules.closes_at and rules.closes_at <= rules.opens_at:
        raise InvalidRequest("the call must close after it opens", param="closes_at")
    if rules.max_grant is not None and not 0 < rules.max_grant <= budget:
        raise InvalidRequest("the largest grant must be more than 0 and at most the budget", param="max_grant")
    if rules.grant_validity_days is not None and rules.grant_validity_days <= 0:
        raise InvalidRequest("grant validity must be at least one day", param="grant_validity_days")
    ledger = hub.services.get(Ledger)
    with hub.db.session() as s:
        if s.scalar(select(CreditProgramme.id).where(CreditProgramme.name == name)) is not None:
            raise Conflict(f"a programme named {name!r} already exists", param="name")
        programme = CreditProgramme(
            name=name, description=rules.description, budget=budget, opens_at=rules.opens_at,
            closes_at=rules.closes_at, require_verified=rules.require_verified,
            jurisdictions=[j.upper() for j in rules.jurisdictions], org_kinds=normalize_kinds(rules.org_kinds),
            max_grant=rules.max_grant, grant_validity_days=rules.grant_validity_days, models=list(rules.models),
            created_by=actor,
        )
        s.add(programme)
        s.flush()
        shares: list[tuple[int, int]] = []
        labels: dict[int, str] = {}
        for partner_name, share in zip(names, (sh for _, sh in partners), strict=True):
            partner = s.scalar(select(CreditPartner).where(CreditPartner.name == partner_name))
            if partner is None:
                partner = CreditPartner(name=partner_name)
                s.add(partner)
                s.flush()
            s.add(ProgrammePartner(programme_id=programme.id, partner_id=partner.id, share=share))
            shares.append((partner.id, share))
            labels[partner.id] = partner_name
        pool, _ = programme_accounts(ledger, s, programme)
        entries = []
        for partner_id, part in split_by_shares(budget, shares).items():
            partner_account = ledger.account(s, "partner", partner_id, f"partner {labels[partner_id]}",
                                             no_overdraft=False)
            entries.append(Entry(f"funding:{programme.id}:{partner_id}", "posted", debit=partner_account,
                                 credit=pool, amount=part, code="funding"))
        s.flush()
        ledger.apply(entries, session=s, strict=True)
    hub.emit("programme.created", actor=actor, subject=f"programme:{programme.id}", name=name,
             budget=format_credits(budget), partners={n: sh / 100 for n, sh in zip(names, [p[1] for p in partners],
                                                                                      strict=True)})
    return programme


def check_eligible(hub: Hub, s: Session, programme: CreditProgramme, org_id: int) -> None:
    """Refuse (403) an organization the programme's rules exclude."""
    from ..access.tables import OrgAccess

    profile = s.get(OrgAccess, org_id)
    if programme.require_verified and (profile is None or profile.verified_at is None):
        raise PermissionDenied(f"programme {programme.name} is open to verified organizations only",
                               code="organization_not_verified")
    if programme.jurisdictions:
        country = (profile.registry_country if profile is not None else None) or ""
        if country.upper() not in programme.jurisdictions:
            raise PermissionDenied(
                f"programme {programme.name} is open to organizations registered in "
                f"{', '.join(programme.jurisdictions)}", code="not_eligible")
    if programme.org_kinds:
        kind = s.scalar(select(Organization.kind).where(Organization.id == org_id))
        if kind not in programme.org_kinds:
            known = f"it is recorded as {kind}" if kind else "its kind is not recorded yet (staff record it)"
            raise PermissionDenied(f"programme {programme.name} is open to organizations of kind "
                                   f"{', '.join(programme.org_kinds)}; {known}", code="kind_not_eligible")


def grant_credits(
    hub: Hub, programme_ref: str | int, org_name: str | int, amount: int, *, reason: str, actor: str,
    expires_at: datetime | None = None, application_id: int | None = None,
) -> CreditGrant:
    """Grant `amount` micro-credits of a programme to an organization (staff decision)."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("a grant needs a reason", param="reason")
    if amount <= 0:
        raise InvalidRequest("a grant must be more than 0 credits", param="credits")
    ledger = hub.services.get(Ledger)
    now = utcnow()
    with hub.db.session() as s:
        programme = get_programme(s, programme_ref)
        org_query = select(Organization)
        org_query = org_query.where(Organization.id == org_name if isinstance(org_name, int)
                                    else Organization.name == org_name)
        org = s.scalar(org_query)
        if org is None:
            raise NotFound(f"no organization {org_name!r}", param="org")
        check_eligible(hub, s, programme, org.id)
        if programme.max_grant is not None and amount > programme.max_grant:
            raise InvalidRequest(f"programme {programme.name} grants at most {format_credits(programme.max_grant)} "
                                 "credits at once", param="credits", code="grant_too_large")
        if expires_at is None and programme.grant_validity_days:
            expires_at = now + timedelta(days=programme.grant_validity_days)
        if expires_at is not None and as_utc(expires_at) <= now:
            raise InvalidRequest("a grant must expire in the future", param="expires")
        grant = CreditGrant(programme_id=programme.id, org_id=org.id, amount=amount, reason=reason,
                            expires_at=expires_at, application_id=application_id, created_by=actor)
        s.add(grant)
        s.flush()
        pool, _ = programme_accounts(ledger, s, programme)
        account = ledger.account(s, "grant", grant.id, f"grant {grant.id} ({programme.name} -> {org.name})",
                                 no_overdraft=True)
        s.flush()
        try:
            ledger.apply([Entry(f"grant:{grant.id}", "posted", debit=pool, credit=account, amount=amount,
                                code="grant", org_id=org.id, details={"reason": reason})], session=s, strict=True)
        except LedgerRefused:
            left = ledger.available(ledger.balances([pool])[pool])
            raise InvalidRequest(
                f"programme {programme.name} has {format_credits(left)} credits left to grant, less than "
                f"{format_credits(amount)}", param="credits", code="programme_budget_exceeded") from None
        org_label, programme_name = org.name, programme.name
    hub.emit("grant.created", actor=actor, subject=f"org:{grant.org_id}", grant=grant.id, programme=programme_name,
             organization=org_label, credits=format_credits(amount), reason=reason,
             expires_at=expires_at.isoformat() if expires_at else None)
    return grant


def programme_list(hub: Hub) -> list[dict[str, Any]]:
    """Every programme as the public sees it: description, call window, eligibility, largest grant."""
    now = utcnow()
    with hub.db.session() as s:
        rows = s.scalars(select(CreditProgramme).order_by(CreditProgramme.id)).all()
    out = []
    for p in rows:
        opens = as_utc(p.opens_at) if p.opens_at else None
        closes = as_utc(p.closes_at) if p.closes_at else None
        out.append({
            "id": p.id, "object": "programme", "name": p.name, "description": p.description,
            "opens_at": opens.isoformat() if opens else None, "closes_at": closes.isoformat() if closes else None,
            "open": (opens is None or opens <= now) and (closes is None or now < closes),
            "eligibility": {"verified_only": p.require_verified, "jurisdictions": p.jurisdictions or None,
                            "kinds": p.org_kinds or None},
            "max_grant": as_number(p.max_grant) if p.max_grant is not None else None,
            "grant_validity_days": p.grant_validity_days, "models": p.models or None,
        })
    return out


def staff_programme_list(hub: Hub) -> list[dict[str, Any]]:
    """The public view of every programme plus what fund staff see: budget, left to grant, partners' shares."""
    ledger = hub.services.get(Ledger)
    with hub.db.session() as s:
        partners: dict[int, list[dict[str, Any]]] = {}
        for pp, name in s.execute(select(ProgrammePartner, CreditPartner.name)
                                  .join(CreditPartner, CreditPartner.id == ProgrammePartner.partner_id)
                                  .order_by(ProgrammePartner.programme_id, CreditPartner.name)):
            partners.setdefault(pp.programme_id, []).append({"name": name, "share": pp.share / 100})
        budgets = {pid: budget for pid, budget in s.execute(select(CreditProgramme.id, CreditProgramme.budget))}
    out = []
    for view in programme_list(hub):
        pool = ledger.account_id("programme", view["id"])
        left = ledger.available(ledger.balances([pool])[pool]) if pool is not None else 0
        out.append({**view, "budget": as_number(budgets[view["id"]]), "left_to_grant": as_number(left),
                    "partners": partners.get(view["id"], [])})
    return out


def grant_view(grant: CreditGrant, programme: str, organization: str) -> dict[str, Any]:
    expires = as_utc(grant.expires_at) if grant.expires_at else None
    return {"id": grant.id, "object": "programme.grant", "programme": programme, "organization": organization,
            "credits": as_number(grant.amount), "reason": grant.reason,
            "expires_at": expires.isoformat() if expires else None, "application": grant.application_id,
            "created_at": as_utc(grant.created_at).isoformat() if grant.created_at else None}
