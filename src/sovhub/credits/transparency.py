"""The programmes section of the public transparency report: aggregates only.

Per programme: its budget, each partner's share, and - only where the programme has made at
least ``MIN_COUNT`` grants - how many, and the credits granted and used. Below that, counts and
amounts are withheld (``"suppressed": true``): a programme with one grant would otherwise publish
one organization's grant and spending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from .amounts import as_number
from .tables import CreditAccount, CreditGrant, CreditPartner, CreditProgramme, ProgrammePartner

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["MIN_COUNT", "programmes_section"]

MIN_COUNT = 5


def programmes_section(hub: Hub) -> dict[str, Any]:
    with hub.db.session() as s:
        programmes = s.scalars(select(CreditProgramme).order_by(CreditProgramme.id)).all()
        grants = {pid: (int(n), int(total or 0)) for pid, n, total in s.execute(
            select(CreditGrant.programme_id, func.count(), func.sum(CreditGrant.amount))
            .group_by(CreditGrant.programme_id))}
        used = dict(s.execute(select(CreditAccount.ref_id, CreditAccount.credits_posted)
                              .where(CreditAccount.kind == "usage")).all())
        shares: dict[int, dict[str, float]] = {}
        for pid, name, share in s.execute(
            select(ProgrammePartner.programme_id, CreditPartner.name, ProgrammePartner.share)
            .join(CreditPartner, CreditPartner.id == ProgrammePartner.partner_id)
        ):
            shares.setdefault(pid, {})[name] = share / 100
    out = []
    for p in programmes:
        count, granted = grants.get(p.id, (0, 0))
        row: dict[str, Any] = {"name": p.name, "budget": as_number(p.budget), "partners": shares.get(p.id, {})}
        if count >= MIN_COUNT:
            row.update(grants=count, granted=as_number(granted), used=as_number(int(used.get(p.id, 0))))
        else:
            row.update(grants=None, granted=None, used=None, suppressed=True)
        out.append(row)
    return {"programmes": {"count": len(out), "suppressed_below": MIN_COUNT, "programmes": out}}
