"""/hub/v1/prices (public) and /hub/v1/organization/credits (an organization's API key).

Neither passes through admission: reading a price or a balance costs no credits. Both answer
from memory and the live store, never from a query per request, so polling them cannot load
the database. An organization's key reads its own organization's credits only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..api.deps import CurrentPrincipal, HubDep
from ..errors import PermissionDenied
from ..store.base import utcnow
from .amounts import as_number
from .control import Credits

__all__ = ["router"]

router = APIRouter(tags=["hub"])


@router.get("/hub/v1/prices")
async def get_prices(hub: HubDep) -> dict[str, Any]:
    """Every model's price in force now and any scheduled, in credits."""
    credits = hub.services.get(Credits)
    book = credits.state.book()
    now = utcnow()
    data = []
    for price in book.all():
        current = book.at(price.model, now)
        if price.effective_from > now or (current is not None and current.id == price.id):
            data.append({
                "model": price.model, "effective_from": price.effective_from.isoformat(),
                "current": price.effective_from <= now,
                "input_per_1m": as_number(price.input_per_1m), "output_per_1m": as_number(price.output_per_1m),
                "embedding_per_1m": as_number(price.embedding_per_1m),
                "moderation_per_request": as_number(price.moderation_per_request),
            })
    settings = hub.settings.credits
    return {"object": "list", "unit": "credits", "data": data,
            "unpriced_models_free": settings.free_unpriced_models, "free_models": settings.free_models,
            "batch_discount_percent": settings.batch_discount_percent}


@router.get("/hub/v1/organization/credits")
async def get_credits(hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The organization's credits: its balance over open grants, and each grant."""
    if principal.org_id is None:
        raise PermissionDenied("this endpoint needs an API key of an organization")
    credits = hub.services.get(Credits)
    grants = credits.state.grants(principal.org_id)
    balances = await credits.balances(grants)
    now = utcnow()
    rows = []
    total = 0
    for g in grants:
        open_now = not g.closed and (g.expires_at is None or g.expires_at > now)
        left = balances.get(g.id, 0) if open_now else 0
        total += left
        rows.append({"id": g.id, "programme": g.programme, "granted": as_number(g.amount),
                     "balance": as_number(left), "expires_at": g.expires_at.isoformat() if g.expires_at else None,
                     "models": sorted(g.models) or None, "status": "open" if open_now else "expired",
                     "low": open_now and credits.low.is_low(g.id)})
    return {"object": "organization.credits", "organization": principal.org_name, "balance": as_number(total),
            "required": credits.pays(principal.org_id), "apply_url": credits.apply_url(), "grants": rows}
