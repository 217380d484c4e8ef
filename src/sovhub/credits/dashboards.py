"""What fund staff and partners read: programmes, partners and grants with their balances, and what a
partner's money bought.

Staff read everything (:func:`fund_overview`). A partner's staff (``credit_partner_members``)
read their own partner only (:func:`partner_dashboard`, :func:`partner_statement`): its
contributions, its part of every usage debit (the ledger's largest-remainder ``split``), summed
per programme, organization and model. The caller checks who may read which partner
(:func:`partners_of`); nothing here takes a partner from a request.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, cast, delete, func, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from ..errors import Conflict, NotFound
from ..store.base import as_utc, utcnow
from ..store.tables import Membership, Organization, User
from .statements import days_of, month_bounds
from .tables import (
    CreditAccount,
    CreditGrant,
    CreditNotice,
    CreditPartner,
    CreditPartnerMember,
    CreditPartnerUsage,
    CreditProgramme,
    CreditTransfer,
    ProgrammePartner,
)

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["PARTNER_COLUMNS", "add_partner_member", "forget_person", "fund_overview", "grant_dashboard",
           "partner_dashboard", "partner_statement", "partner_statement_csv", "partners_of", "programme_dashboard",
           "programme_use_per_day", "remove_partner_member"]

PARTNER_COLUMNS = ("seq", "ts", "programme", "organization", "model", "request_id", "debit", "partner_part")


def _available(account: CreditAccount | None) -> int:
    if account is None:
        return 0
    return account.credits_posted - account.debits_posted - account.debits_pending


def fund_overview(hub: Hub) -> dict[str, Any]:
    """Partners, programmes and grants with their balances from the ledger (micro-credits)."""
    now = utcnow()
    with hub.db.session() as s:
        accounts = {(a.kind, a.ref_id): a for a in s.scalars(select(CreditAccount))}
        partners_rows = s.scalars(select(CreditPartner).order_by(CreditPartner.id)).all()
        used_by_partner = dict(s.execute(select(CreditPartnerUsage.partner_id, func.sum(CreditPartnerUsage.amount))
                                         .group_by(CreditPartnerUsage.partner_id)).all())
        members: dict[int, list[str]] = {}
        for pid, email in s.execute(select(CreditPartnerMember.partner_id, User.email)
                                    .join(User, User.id == CreditPartnerMember.user_id).order_by(User.email)):
            members.setdefault(pid, []).append(email)
        shares: dict[int, list[tuple[str, int]]] = {}
        for pid, name, share in s.execute(select(ProgrammePartner.programme_id, CreditPartner.name,
                                                 ProgrammePartner.share)
                                          .join(CreditPartner, CreditPartner.id == ProgrammePartner.partner_id)
                                          .order_by(ProgrammePartner.partner_id)):
            shares.setdefault(pid, []).append((name, share))
        programmes_rows = s.scalars(select(CreditProgramme).order_by(CreditProgramme.id)).all()
        grants_rows = s.execute(select(CreditGrant, Organization.name, CreditProgramme.name)
                                .join(Organization, Organization.id == CreditGrant.org_id)
                                .join(CreditProgramme, CreditProgramme.id == CreditGrant.programme_id)
                                .order_by(CreditGrant.id.desc()).limit(500)).all()
        granted = dict(s.execute(select(CreditGrant.programme_id, func.sum(CreditGrant.amount))
                                 .group_by(CreditGrant.programme_id)).all())
        orgs = [(o.name, o.kind) for o in s.scalars(select(Organization).order_by(Organization.name).limit(1000))]
        org_members: dict[str, list[tuple[str, str]]] = {}
        for org_name, email, role in s.execute(
                select(Organization.name, User.email, Membership.role)
                .join(Membership, Membership.org_id == Organization.id).join(User, User.id == Membership.user_id)
                .where(Organization.name.in_([name for name, _ in orgs])).order_by(User.email)):
            org_members.setdefault(org_name, []).append((email, role))
    partners = []
    for p in partners_rows:
        account = accounts.get(("partner", p.id))
        partners.append({"id": p.id, "name": p.name, "contributed": account.debits_posted if account else 0,
                         "used": int(used_by_partner.get(p.id) or 0), "members": members.get(p.id, [])})
    programmes = []
    for pr in programmes_rows:
        usage = accounts.get(("usage", pr.id))
        opens = as_utc(pr.opens_at) if pr.opens_at else None
        closes = as_utc(pr.closes_at) if pr.closes_at else None
        programmes.append({
            "id": pr.id, "name": pr.name, "description": pr.description, "budget": pr.budget,
            "left": _available(accounts.get(("programme", pr.id))), "granted": int(granted.get(pr.id) or 0),
            "used": usage.credits_posted if usage else 0, "partners": shares.get(pr.id, []),
            "opens_at": opens, "closes_at": closes, "kinds": list(pr.org_kinds or []),
            "open": (opens is None or opens <= now) and (closes is None or now < closes),
            "max_grant": pr.max_grant, "require_verified": pr.require_verified, "models": list(pr.models or []),
        })
    grants = []
    for g, org, programme in grants_rows:
        expires = as_utc(g.expires_at) if g.expires_at else None
        status = "closed" if g.closed_at else ("expired" if expires is not None and expires <= now else "open")
        grants.append({"id": g.id, "programme": programme, "programme_id": g.programme_id, "organization": org,
                       "amount": g.amount, "balance": _available(accounts.get(("grant", g.id))),
                       "expires_at": expires, "status": status, "low": g.low_since is not None,
                       "reason": g.reason})
    return {"partners": partners, "programmes": programmes, "grants": grants, "organizations": orgs,
            "org_members": org_members}


def _utc_day(hub: Hub, column: Any) -> ColumnElement[Any]:
    if hub.db.is_sqlite:
        return func.date(column)
    return cast(func.timezone("UTC", column), Date)


def programme_use_per_day(hub: Hub, programme_id: int, month: str) -> list[tuple[str, int]]:
    """What the programme's grants paid for on each day of `month` (micro-credits; one grouped query)."""
    start, end = month_bounds(month)
    t = CreditTransfer
    grant_account = aliased(CreditAccount)
    day = _utc_day(hub, t.ts)
    with hub.db.session() as s:
        rows = s.execute(
            select(day, func.sum(t.amount))
            .join(grant_account, grant_account.id == t.debit_account_id)
            .join(CreditGrant, CreditGrant.id == grant_account.ref_id)
            .where(grant_account.kind == "grant", t.code == "usage", t.kind.in_(("posted", "post")),
                   CreditGrant.programme_id == programme_id, t.ts >= start, t.ts < end)
            .group_by(day)).all()
    return days_of(month, {str(d): int(total or 0) for d, total in rows})


def programme_dashboard(hub: Hub, programme_id: int, month: str | None = None) -> dict[str, Any]:
    """One programme for staff: its rules, each partner's share and what it has paid, every grant with its
    use, what was used on each day of `month` (this month when None), and the applications it received
    (micro-credits)."""
    now = utcnow()
    month = month or now.strftime("%Y-%m")
    with hub.db.session() as s:
        programme = s.get(CreditProgramme, programme_id)
        if programme is None:
            raise NotFound(f"no programme {programme_id}", param="programme")
        partners = s.execute(
            select(CreditPartner.id, CreditPartner.name, ProgrammePartner.share, CreditPartnerUsage.amount)
            .join(ProgrammePartner, ProgrammePartner.partner_id == CreditPartner.id)
            .join(CreditPartnerUsage, (CreditPartnerUsage.partner_id == CreditPartner.id)
                  & (CreditPartnerUsage.programme_id == programme_id), isouter=True)
            .where(ProgrammePartner.programme_id == programme_id).order_by(CreditPartner.id)).all()
        put_in = dict(s.execute(select(CreditTransfer.id, CreditTransfer.amount).where(
            CreditTransfer.id.in_([f"funding:{programme_id}:{pid}" for pid, _, _, _ in partners]))).all())
        grant_rows = s.execute(select(CreditGrant, Organization.name)
                               .join(Organization, Organization.id == CreditGrant.org_id)
                               .where(CreditGrant.programme_id == programme_id).order_by(CreditGrant.id)).all()
        accounts = {a.ref_id: a for a in s.scalars(select(CreditAccount).where(
            CreditAccount.kind == "grant", CreditAccount.ref_id.in_([g.id for g, _ in grant_rows])))}
        pool = s.scalar(select(CreditAccount).where(CreditAccount.kind == "programme",
                                                    CreditAccount.ref_id == programme_id))
        usage = s.scalar(select(CreditAccount).where(CreditAccount.kind == "usage",
                                                     CreditAccount.ref_id == programme_id))
        facts = {"id": programme.id, "name": programme.name, "description": programme.description,
                 "budget": programme.budget, "kinds": list(programme.org_kinds or []),
                 "jurisdictions": list(programme.jurisdictions or []), "models": list(programme.models or []),
                 "max_grant": programme.max_grant, "require_verified": programme.require_verified,
                 "opens_at": as_utc(programme.opens_at) if programme.opens_at else None,
                 "closes_at": as_utc(programme.closes_at) if programme.closes_at else None}
    grants = []
    used_by_org: dict[str, int] = {}
    for g, org in grant_rows:
        account = accounts.get(g.id)
        expires = as_utc(g.expires_at) if g.expires_at else None
        grants.append({"id": g.id, "organization": org, "amount": g.amount, "balance": _available(account),
                       "expires_at": expires, "low": g.low_since is not None,
                       "status": "closed" if g.closed_at else (
                           "expired" if expires is not None and expires <= now else "open")})
    with hub.db.session() as s:
        # Use per organization from the ledger's usage debits (a returned remainder is not use).
        t = CreditTransfer
        grant_account = aliased(CreditAccount)
        for org_name, total in s.execute(
            select(Organization.name, func.sum(t.amount))
            .join(grant_account, grant_account.id == t.debit_account_id)
            .join(CreditGrant, CreditGrant.id == grant_account.ref_id)
            .join(Organization, Organization.id == CreditGrant.org_id)
            .where(grant_account.kind == "grant", t.code == "usage", t.kind.in_(("posted", "post")),
                   CreditGrant.programme_id == programme_id)
            .group_by(Organization.name)):
            used_by_org[str(org_name)] = int(total or 0)
    return {**facts, "left": _available(pool), "used": usage.credits_posted if usage is not None else 0,
            "granted": sum(g["amount"] for g in grants), "grants": grants,
            "partners": [{"id": pid, "name": name, "share": share,
                          "contributed": int(put_in.get(f"funding:{programme_id}:{pid}", 0)), "used": int(used or 0)}
                         for pid, name, share, used in partners],
            "used_by_org": sorted(used_by_org.items(), key=lambda kv: (-kv[1], kv[0])),
            "month": month, **_per_day(programme_use_per_day(hub, programme_id, month))}


def _per_day(days: list[tuple[str, int]]) -> dict[str, Any]:
    return {"per_day": days, "month_used": sum(v for _, v in days)}


def grant_dashboard(hub: Hub, grant_id: int, *, limit: int = 200) -> dict[str, Any]:
    """One grant for staff: its facts and balance, and its latest ledger transfers (newest first)."""
    now = utcnow()
    with hub.db.session() as s:
        found = s.execute(select(CreditGrant, Organization.name, CreditProgramme.name)
                          .join(Organization, Organization.id == CreditGrant.org_id)
                          .join(CreditProgramme, CreditProgramme.id == CreditGrant.programme_id)
                          .where(CreditGrant.id == grant_id)).first()
        if found is None:
            raise NotFound(f"no grant {grant_id}", param="grant")
        grant, org, programme = found
        account = s.scalar(select(CreditAccount).where(CreditAccount.kind == "grant", CreditAccount.ref_id == grant_id))
        transfers = [] if account is None else s.scalars(
            select(CreditTransfer).where((CreditTransfer.debit_account_id == account.id)
                                         | (CreditTransfer.credit_account_id == account.id))
            .order_by(CreditTransfer.seq.desc()).limit(limit)).all()
        expires = as_utc(grant.expires_at) if grant.expires_at else None
        lines = [{"seq": t.seq, "ts": as_utc(t.ts), "kind": t.kind, "code": t.code, "request_id": t.request_id,
                  "model": t.model, "amount": t.amount if account is not None and t.credit_account_id == account.id
                  else -t.amount} for t in transfers]
        return {"id": grant.id, "programme": programme, "programme_id": grant.programme_id, "organization": org,
                "amount": grant.amount, "balance": _available(account), "reason": grant.reason,
                "created_by": grant.created_by, "created_at": as_utc(grant.created_at), "expires_at": expires,
                "application": grant.application_id, "low": grant.low_since is not None,
                "used": account.debits_posted if account is not None else 0,
                "status": "closed" if grant.closed_at else ("expired" if expires is not None and expires <= now
                                                            else "open"),
                "transfers": lines}


# --- partners' staff ---------------------------------------------------------------------------


def partners_of(hub: Hub, user_id: int) -> list[tuple[int, str]]:
    """The partners `user_id` works for: (id, name)."""
    with hub.db.session() as s:
        return [(int(i), str(n)) for i, n in s.execute(
            select(CreditPartner.id, CreditPartner.name)
            .join(CreditPartnerMember, CreditPartnerMember.partner_id == CreditPartner.id)
            .where(CreditPartnerMember.user_id == user_id).order_by(CreditPartner.name))]


def _partner(s: Any, ref: int | str) -> CreditPartner:
    query = select(CreditPartner).where(CreditPartner.id == ref if isinstance(ref, int) else CreditPartner.name == ref)
    partner = s.scalar(query)
    if partner is None:
        raise NotFound(f"no partner {ref!r}", param="partner")
    assert isinstance(partner, CreditPartner)
    return partner


def add_partner_member(hub: Hub, partner_ref: int | str, email: str, *, actor: str) -> None:
    """Let the person with `email` read `partner_ref`'s dashboard; audited."""
    with hub.db.session() as s:
        partner = _partner(s, partner_ref)
        user_id = s.scalar(select(User.id).where(User.email == email.strip().lower()))
        if user_id is None:
            raise NotFound(f"no account {email!r}", param="email")
        if s.get(CreditPartnerMember, (partner.id, user_id)) is not None:
            raise Conflict(f"{email} already works for partner {partner.name}", param="email")
        s.add(CreditPartnerMember(partner_id=partner.id, user_id=user_id, added_by=actor))
        partner_id = partner.id
    hub.emit("partner.member_added", actor=actor, subject=f"partner:{partner_id}", user=user_id)


def forget_person(hub: Hub, user_id: int) -> None:
    """Erasure: the person no longer works for any partner, and the notices they dismissed name nobody."""
    with hub.db.session() as s:
        s.execute(delete(CreditPartnerMember).where(CreditPartnerMember.user_id == user_id))
        s.execute(update(CreditNotice).where(CreditNotice.dismissed_by == f"user:{user_id}")
                  .values(dismissed_by="erased"))


def remove_partner_member(hub: Hub, partner_ref: int | str, person: int | str, *, actor: str) -> None:
    """`person` (user id or e-mail) no longer reads `partner_ref`'s dashboard; audited."""
    with hub.db.session() as s:
        partner = _partner(s, partner_ref)
        user_id = s.scalar(select(User.id).where(
            User.id == person if isinstance(person, int) else User.email == person.strip().lower()))
        row = None if user_id is None else s.get(CreditPartnerMember, (partner.id, user_id))
        if row is None:
            raise NotFound(f"{person!r} does not work for partner {partner.name}", param="email", code="not_member")
        s.delete(row)
        partner_id = partner.id
    hub.emit("partner.member_removed", actor=actor, subject=f"partner:{partner_id}", user=user_id)


# --- one partner's view ------------------------------------------------------------------------


def _usage_rows(s: Any, programme_ids: Iterable[int], month: str | None, after: int = 0,
                limit: int | None = None) -> list[Any]:
    t = CreditTransfer
    grant_account = aliased(CreditAccount)
    query = (select(t.seq, t.ts, t.amount, t.split, t.model, t.request_id, CreditGrant.programme_id,
                    CreditGrant.org_id)
             .join(grant_account, grant_account.id == t.debit_account_id)
             .join(CreditGrant, CreditGrant.id == grant_account.ref_id)
             .where(grant_account.kind == "grant", t.code == "usage", t.kind.in_(("posted", "post")), t.amount > 0,
                    CreditGrant.programme_id.in_(list(programme_ids)), t.seq > after)
             .order_by(t.seq))
    if month is not None:
        start, end = month_bounds(month)
        query = query.where(t.ts >= start, t.ts < end)
    if limit is not None:
        query = query.limit(limit)
    return list(s.execute(query).all())


def partner_dashboard(hub: Hub, partner_id: int, month: str) -> dict[str, Any]:
    """One partner: what it put in per programme, what its part paid for (to date), and in `month`
    its part of the spending per day, programme, organization and model (micro-credits)."""
    with hub.db.session() as s:
        partner = _partner(s, partner_id)
        funded = s.execute(
            select(CreditProgramme.id, CreditProgramme.name, ProgrammePartner.share)
            .join(ProgrammePartner, ProgrammePartner.programme_id == CreditProgramme.id)
            .where(ProgrammePartner.partner_id == partner.id).order_by(CreditProgramme.id)).all()
        # The partner's part of each budget is the programme's funding transfer from its account.
        put_in = dict(s.execute(select(CreditTransfer.id, CreditTransfer.amount).where(
            CreditTransfer.id.in_([f"funding:{pid}:{partner.id}" for pid, _, _ in funded]))).all())
        used = dict(s.execute(select(CreditPartnerUsage.programme_id, CreditPartnerUsage.amount)
                              .where(CreditPartnerUsage.partner_id == partner.id)).all())
        names = {pid: name for pid, name, _ in funded}
        rows = _usage_rows(s, names, month)
        orgs = dict(s.execute(select(Organization.id, Organization.name)
                              .where(Organization.id.in_({r.org_id for r in rows}))).all())
        key = str(partner.id)
        by: dict[str, dict[str, int]] = {"programme": {}, "organization": {}, "model": {}}
        per_day: dict[str, int] = {}
        total = 0
        for r in rows:
            part = int((r.split or {}).get(key, 0))
            if not part:
                continue
            total += part
            day = as_utc(r.ts).date().isoformat()
            per_day[day] = per_day.get(day, 0) + part
            for group, label in (("programme", names[r.programme_id]), ("organization", orgs.get(r.org_id, "?")),
                                 ("model", r.model or "?")):
                by[group][label] = by[group].get(label, 0) + part
        programmes = [{"id": pid, "name": name, "share": share,
                       "contributed": int(put_in.get(f"funding:{pid}:{partner.id}", 0)),
                       "used": int(used.get(pid, 0))} for pid, name, share in funded]
        return {"id": partner.id, "name": partner.name, "month": month, "programmes": programmes,
                "contributed": sum(p["contributed"] for p in programmes), "used": sum(p["used"] for p in programmes),
                "month_total": total, "per_day": days_of(month, per_day),
                "by": {g: sorted(v.items(), key=lambda kv: (-kv[1], kv[0])) for g, v in by.items()}}


def partner_statement(hub: Hub, partner_id: int, month: str, *, after: int = 0,
                      limit: int = 10_000) -> dict[str, Any]:
    """Every usage debit of `month` the partner paid a part of, traced to its request id."""
    with hub.db.session() as s:
        partner = _partner(s, partner_id)
        names = dict(s.execute(select(CreditProgramme.id, CreditProgramme.name)
                               .join(ProgrammePartner, ProgrammePartner.programme_id == CreditProgramme.id)
                               .where(ProgrammePartner.partner_id == partner.id)).all())
        rows = _usage_rows(s, names, month, after=after, limit=limit + 1)
        orgs = dict(s.execute(select(Organization.id, Organization.name)
                              .where(Organization.id.in_({r.org_id for r in rows}))).all())
        key, name = str(partner.id), partner.name
    more = len(rows) > limit
    lines = [{"seq": r.seq, "ts": as_utc(r.ts).isoformat(), "programme": names[r.programme_id],
              "organization": orgs.get(r.org_id), "model": r.model, "request_id": r.request_id,
              "debit": r.amount, "partner_part": int((r.split or {}).get(key, 0))} for r in rows[:limit]]
    return {"object": "partner.statement", "partner": name, "month": month, "lines": lines, "has_more": more,
            "next_after": lines[-1]["seq"] if more and lines else None,
            "total": sum(line["partner_part"] for line in lines)}


def partner_statement_csv(data: dict[str, Any]) -> str:
    """The statement as CSV, amounts in credits (exact decimals)."""
    from .amounts import format_credits

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PARTNER_COLUMNS)
    for line in data["lines"]:
        writer.writerow([format_credits(line[c]) if c in ("debit", "partner_part") else
                         ("" if line[c] is None else line[c]) for c in PARTNER_COLUMNS])
    return out.getvalue()
