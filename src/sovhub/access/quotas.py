"""The admission control (`sovhub_admission`): per key, per organization and per tier limits.

Where limits come from (no database read on the hot path):

* key: ``api_keys.limits`` (carried in the Principal from the key cache);
* organization: ``access_org_profiles.limits``, else ``access.org_limits``;
* tier: ``access.tier_limits[tier]``, counted per organization across that tier's models;
* person (web-assistant users, signed in without an API key): ``access.user_limits``, per person,
  with the quotas staff set for that person over them (``access_person_profiles.limits``).

Each request holds its reservation (``Admission.reserved``) against the token limits from admission
to settlement (see :mod:`.ratelimit`).

Changing a key's limits (``set_key_limits``) drops the key from this process's key cache, so its next
request here carries the new limits; other replicas hold their cached copy for up to ``key_cache_ttl_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import select

from ..accounts import KeyCache
from ..errors import BackendUnavailable, Conflict, InvalidRequest, NotFound, RateLimited
from ..store.base import utcnow
from ..store.tables import ApiKey, Organization
from .ratelimit import FIELDS, REQUEST_FIELDS, Check, Limit, MemoryLimiter, RedisLimiter, Reservation
from .redis_conn import AccessRedis
from .state import AccessState
from .tables import OrgAccess
from .tiers import check_tier

if TYPE_CHECKING:
    from ..admission import Admission
    from ..hub import Hub
    from ..pipeline import Principal

__all__ = ["QuotaControl", "format_reset", "limits_for", "merge_limits", "set_key_limits", "set_org_limits"]

log = logging.getLogger("sovhub.access.quotas")

_NAMES = {
    "rpm": "requests per minute", "rpd": "requests per day", "tpm": "tokens per minute",
    "tpd": "tokens per day", "budget_day": "token budget per day", "budget_week": "token budget per week",
    "budget_month": "token budget per month",
}


def format_reset(ms: int) -> str:
    """OpenAI's duration style: '20ms', '6s', '1m30s', '2h0m5s'."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = ms / 1000
    hours, rest = divmod(int(seconds), 3600)
    minutes = rest // 60
    secs = seconds - hours * 3600 - minutes * 60
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _limits(scope: str, values: dict[str, Any]) -> list[Limit]:
    return [Limit(scope, f, int(values[f])) for f in FIELDS if values.get(f) is not None]


def limits_for(hub: Hub, principal: Principal, model: str) -> list[Limit]:
    state = hub.services.get(AccessState)
    out: list[Limit] = []
    if principal.key_id is not None:
        out += _limits(f"key:{principal.key_id}", principal.limits)
    if principal.org_id is not None:
        facts = state.org(principal.org_id)
        out += _limits(f"org:{principal.org_id}", facts.limits or hub.settings.access.org_limits)
        tier = state.tier(model)
        out += _limits(f"org:{principal.org_id}:tier:{tier}", hub.settings.access.tier_limits.get(tier, {}))
    elif principal.user_id is not None and principal.key_id is None:
        # A web-assistant user: no organization pays for them, so the person is the unit. Quotas
        # staff set for this person replace the defaults field by field.
        own = state.person(principal.user_id).limits
        out += _limits(f"user:{principal.user_id}", {**hub.settings.access.user_limits, **own})
    return out


def _headers(checks: list[Check], admitted: bool, reserved: int = 0) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, name in (("r", "requests"), ("t", "tokens")):
        relevant = [c for c in checks if c.limit.kind == kind]
        if not relevant:
            continue
        # Report the tightest limit, as a client pacing itself needs the one it will hit first.
        spent = (1 if kind == "r" else reserved) if admitted else 0
        tightest = min(relevant, key=lambda c: c.limit.value - c.used - spent)
        remaining = max(tightest.limit.value - tightest.used - spent, 0)
        # The request just admitted is the newest entry, so its window resets one window from now.
        reset = REQUEST_FIELDS[tightest.limit.field] if kind == "r" and admitted else tightest.reset_ms
        headers[f"x-ratelimit-limit-{name}"] = str(tightest.limit.value)
        headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_reset(reset)
    return headers


class QuotaControl:
    """`admit` refuses with 429 and Retry-After, or returns the x-ratelimit-* headers."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        redis = hub.services.get(AccessRedis).client
        self.store: MemoryLimiter | RedisLimiter = (
            RedisLimiter(redis, hub.settings.access.redis_prefix) if redis is not None else MemoryLimiter()
        )

    async def admit(self, admission: Admission) -> dict[str, str]:
        principal, model = admission.principal, admission.model
        # Tier first: a request the tier refuses must not use up the caller's quota.
        check_tier(self.hub, principal, model)
        limits = limits_for(self.hub, principal, model)
        if not limits:
            return {}
        try:
            checks = await self.store.admit(limits, _reservation(admission))
        except RedisError as exc:
            # Fail closed: admitting without counting would break the limits every replica relies on.
            log.error("rate limiter unavailable: %s", exc)
            raise BackendUnavailable("the rate limiter is unavailable; retry shortly", code="rate_limiter_unavailable",
                                     headers={"retry-after": "1"}) from exc
        refused = [c for c in checks if c.wait_ms > 0]
        if not refused:
            return _headers(checks, admitted=True, reserved=admission.reserved)
        worst = max(refused, key=lambda c: c.wait_ms)
        lim = worst.limit
        wait_s = worst.wait_ms / 1000
        who = {"key": f"API key {principal.key_prefix}", "org": f"organization {principal.org_name}",
               "user": "your account"}[lim.scope.split(":")[0]]
        if ":tier:" in lim.scope:
            who += f" (models in tier {lim.scope.rsplit(':', 1)[1]!r})"
        asks = f", this request may use up to {admission.reserved}" if lim.kind != "r" and admission.reserved else ""
        if lim.kind != "r" and admission.reserved > lim.value:
            raise RateLimited(
                f"This request may use up to {admission.reserved} tokens (max_tokens x n, the prompt and its "
                f"guard-model checks), more than the {_NAMES[lim.field]} limit of {who} ({lim.field}: "
                f"{lim.value}). Lower max_tokens or n.",
                retry_after=wait_s, code="tokens_over_limit", headers=_headers(checks, admitted=False),
            )
        raise RateLimited(
            f"Rate limit reached for {who} on {_NAMES[lim.field]} ({lim.field}): limit {lim.value}, "
            f"used {worst.used}{asks}. Please try again in {format_reset(worst.wait_ms)}.",
            retry_after=wait_s,
            code="token_budget_exceeded" if lim.kind == "b" else "rate_limit_exceeded",
            headers=_headers(checks, admitted=False),
        )

    async def settle(self, admission: Admission, tokens: int) -> None:
        limits = limits_for(self.hub, admission.principal, admission.model)
        if limits and (tokens > 0 or admission.reserved > 0):
            try:
                await self.store.settle(limits, tokens, _reservation(admission))
            except RedisError as exc:
                # The answer was already sent; losing one request's tokens beats failing it afterwards.
                log.error("could not record %d tokens with the rate limiter: %s", tokens, exc)


def _reservation(admission: Admission) -> Reservation | None:
    if admission.reserved <= 0:
        return None
    return Reservation(admission.ticket, admission.reserved, admission.admitted_at)


def merge_limits(current: Mapping[str, Any], changes: Mapping[str, int | None]) -> dict[str, int]:
    """`current` with each change applied: a whole number >= 0 sets that limit, None removes it."""
    out = {k: int(v) for k, v in current.items()}
    for field, value in changes.items():
        if field not in FIELDS:
            raise InvalidRequest(f"unknown limit {field!r}; known: {', '.join(FIELDS)}", param=field)
        if value is None:
            out.pop(field, None)
        # bool is an int to Python, but `rpm=True` is a caller's mistake, not a limit of 1.
        elif not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"limit {field} must be a whole number, got {value!r}", param=field)
        elif value < 0:
            raise InvalidRequest(f"limit {field} must be >= 0, got {value}", param=field)
        else:
            out[field] = value
    return out


def set_org_limits(hub: Hub, org_id: int, limits: dict[str, int | None], *, actor: str = "cli") -> dict[str, int]:
    """Set (value) or clear (None) an organization's limits; returns the limits now in force."""
    with hub.db.session() as s:
        row = s.get(OrgAccess, org_id) or OrgAccess(org_id=org_id, limits={}, tiers=[])
        s.add(row)
        current = merge_limits(row.limits or {}, limits)
        row.limits, row.updated_at = current, utcnow()
    hub.services.get(AccessState).load()
    hub.emit("org.limits_set", actor=actor, subject=f"org:{org_id}", limits=current)
    return current


def set_key_limits(hub: Hub, prefix: str, limits: Mapping[str, int | None], *, actor: str) -> dict[str, int]:
    """Set (value) or clear (None) an API key's limits; returns the key's limits now in force.

    Fields are those of the rate limiter (``FIELDS``); fields not named keep their value. The
    change applies to the key's next request in this process; other replicas apply it when their
    cached copy of the key expires (``key_cache_ttl_s``). A revoked key's limits cannot change. A
    key minted by another key cannot be raised above (or cleared past) its creator's limits
    (InvalidRequest ``limit_above_parent``); lowering a key lowers the keys minted from it to fit.

    >>> set_key_limits(hub, "sk-sov-AbCd1234", {"rpm": 60, "tpd": None}, actor="cli:ops")
    {'rpm': 60}
    """
    # Validate before reading: bad input is refused the same way whether or not the key exists.
    merge_limits({}, limits)
    with hub.db.session() as s:
        found = s.execute(
            select(ApiKey, Organization.name)
            .join(Organization, Organization.id == ApiKey.org_id)
            .where(ApiKey.prefix == prefix)
        ).first()
        if found is None:
            raise NotFound(f"no API key with prefix {prefix!r}", param="prefix")
        row, org_name = found
        if row.revoked_at is not None:
            raise Conflict(f"API key {prefix} is revoked; its limits can no longer change",
                           param="prefix", code="revoked_api_key")
        current = merge_limits(row.limits or {}, limits)
        if row.parent_key_id is not None:
            # Row-locked, as when a key mints one: a concurrent change of the parent waits for this.
            parent = s.scalar(select(ApiKey).where(ApiKey.id == row.parent_key_id).with_for_update())
            if parent is not None:
                _check_within(current, parent)
        row.limits = current
        narrowed = _narrow_descendants(s, row.id, current)
    cache = hub.services.get(KeyCache)
    for changed in (prefix, *narrowed):
        cache.forget_prefix(changed)
    extra = {"narrowed_children": narrowed} if narrowed else {}
    hub.emit("key.limits_set", actor=actor, subject=f"key:{prefix}", org=org_name, limits=current, **extra)
    return current


def _check_within(limits: Mapping[str, int], parent: ApiKey) -> None:
    """A key minted by a key stays within its creator's limits, whoever changes them later."""
    for field, ceiling in sorted((parent.limits or {}).items()):
        value = limits.get(field)
        if value is None or value > int(ceiling):
            wanted = "no limit" if value is None else f"{field}={value}"
            raise InvalidRequest(
                f"{wanted} is above {field}={int(ceiling)} of key {parent.prefix}, which made this key: "
                "a key's limits stay within those of the key that made it",
                param=field, code="limit_above_parent",
            )


def _narrow_descendants(s: Any, key_id: int, limits: Mapping[str, int]) -> list[str]:
    """Lower the limits of every key minted from this one (and from those) to fit the new ceiling."""
    changed: list[str] = []
    frontier: list[tuple[int, Mapping[str, int]]] = [(key_id, limits)]
    seen = {key_id}
    while frontier:
        parents = dict(frontier)
        frontier = []
        children = s.scalars(select(ApiKey).where(ApiKey.parent_key_id.in_(list(parents))).with_for_update())
        for child in children:
            if child.id in seen:
                continue
            seen.add(child.id)
            own = {k: int(v) for k, v in (child.limits or {}).items()}
            fitted = dict(own)
            for field, ceiling in parents[child.parent_key_id].items():
                fitted[field] = min(own.get(field, ceiling), ceiling)
            if fitted != own and child.revoked_at is None:
                child.limits = fitted
                changed.append(child.prefix)
            frontier.append((child.id, fitted))
    return changed
