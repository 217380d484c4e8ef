"""Model access tiers: `open` for everyone, `verified` for verified organizations, custom ones granted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from sovhub import linear_re

from ..errors import InvalidRequest, OrganizationNotVerified, PermissionDenied
from ..store.base import utcnow
from .state import OPEN, VERIFIED, AccessState
from .tables import ModelTier, OrgAccess

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..hub import Hub
    from ..pipeline import ChatContext, Principal

__all__ = ["TierPolicy", "check_tier", "grant_tier", "list_tiers", "set_tier"]

_TIER_RE = linear_re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
HOW_TO_VERIFY = (
    "An administrator of your organization can request verification with "
    "POST /hub/v1/organization/verification (or in the web admin); the legal representative then "
    "confirms with national eID at assurance level high. Check progress at no cost with "
    "GET /hub/v1/organization/verification."
)


def check_tier(hub: Hub, principal: Principal | None, model: str) -> None:
    """Raise unless the principal's organization may use `model`'s tier."""
    state = hub.services.get(AccessState)
    tier = state.tier(model)
    if tier == OPEN or principal is None:
        return
    if principal.org_id is None and principal.key_id is None and principal.user_id is not None:
        # A web-assistant person: no organization; staff may have given them a tier of their own.
        if state.person(principal.user_id).may_use(tier):
            return
        raise PermissionDenied(
            f"The model `{model}` is in the access tier {tier!r}, which your account does not have; "
            "ask the hub's staff.",
            param="model",
            code="model_tier_not_granted",
        )
    if state.org(principal.org_id).may_use(tier):
        return
    if tier == VERIFIED:
        who = f"organization {principal.org_name!r}" if principal.org_name else "your account"
        raise OrganizationNotVerified(
            f"The model `{model}` is available to verified organizations only, and {who} is not verified. "
            + HOW_TO_VERIFY,
            param="model",
        )
    raise PermissionDenied(
        f"The model `{model}` is in the access tier {tier!r}, which has not been granted to your organization; "
        "ask the hub's staff to grant it.",
        param="model",
        code="model_tier_not_granted",
    )


class TierPolicy:
    """RoutePolicy: refuse models above the organization's tier (so /v1/models hides them too)."""

    name = "access.tiers"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def filter(self, ctx: ChatContext | None, model: str, backends: list[Backend]) -> list[Backend]:
        check_tier(self.hub, ctx.principal if ctx is not None else None, model)
        return backends


def validate_tier(tier: str) -> str:
    tier = tier.strip().lower()
    if not _TIER_RE.match(tier):
        raise InvalidRequest(f"invalid tier {tier!r}: use lowercase letters, digits, '-' or '_'", param="tier")
    return tier


def set_tier(hub: Hub, model: str, tier: str, *, actor: str = "cli") -> str:
    tier = validate_tier(tier)
    model = model.strip()
    if not model or len(model) > 200:
        raise InvalidRequest("a model id of 1-200 characters is required", param="model")
    with hub.db.session() as s:
        row = s.get(ModelTier, model)
        if tier == OPEN:
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(ModelTier(model=model, tier=tier))
        else:
            row.tier, row.updated_at = tier, utcnow()
    hub.services.get(AccessState).load()
    hub.emit("model.tier_set", actor=actor, subject=f"model:{model}", tier=tier)
    return tier


def list_tiers(hub: Hub) -> dict[str, str]:
    """Models with a tier other than `open`."""
    with hub.db.session() as s:
        return {row.model: row.tier for row in s.scalars(select(ModelTier).order_by(ModelTier.model))}


def grant_tier(hub: Hub, org_id: int, tier: str, *, granted: bool = True, actor: str = "cli") -> list[str]:
    """Grant (or withdraw) a custom tier to an organization."""
    tier = validate_tier(tier)
    if tier in (OPEN, VERIFIED):
        raise InvalidRequest(f"tier {tier!r} is not granted: it follows from verification", param="tier")
    with hub.db.session() as s:
        row = s.get(OrgAccess, org_id) or OrgAccess(org_id=org_id, limits={}, tiers=[])
        s.add(row)
        tiers = set(row.tiers or [])
        (tiers.add if granted else tiers.discard)(tier)
        row.tiers, row.updated_at = sorted(tiers), utcnow()
        result = list(row.tiers)
    hub.services.get(AccessState).load()
    hub.emit("org.tier_granted" if granted else "org.tier_withdrawn", actor=actor, subject=f"org:{org_id}", tier=tier)
    return result
