"""Organizations, users and API keys: the domain service (no HTTP here).

API keys look like ``sk-sov-<prefix>_<secret>``. Only ``sk-sov-<prefix>`` (visible, unique)
and the SHA-256 of the whole key are stored; keys carry 190 bits of randomness, so a fast
hash is the right tool (a slow password hash would only add latency to every request).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from .hub import Hub
from .pipeline import Principal
from .store.base import utcnow
from .store.tables import ApiKey, Organization

__all__ = ["CreatedKey", "KeyCache", "create_key", "create_org", "get_org", "list_keys", "revoke_key"]

KEY_PREFIX = "sk-sov-"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,119}$")
_LIMIT_FIELDS = ("rpm", "tpm", "rpd", "tpd")


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: int
    prefix: str
    secret: str
    org: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def validate_name(name: str, what: str = "name") -> str:
    name = name.strip()
    if not _NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid {what} {name!r}: use 1-120 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit",
            param=what,
        )
    return name


def create_org(hub: Hub, name: str, *, actor: str = "cli") -> Organization:
    name = validate_name(name, "organization")
    with hub.db.session() as s:
        if s.scalar(select(Organization).where(Organization.name == name)) is not None:
            raise Conflict(f"organization {name!r} already exists", param="name")
        org = Organization(name=name)
        s.add(org)
        s.flush()
    hub.emit("org.created", actor=actor, subject=f"org:{org.id}", name=name)
    return org


def get_org(hub: Hub, name: str) -> Organization:
    with hub.db.session() as s:
        org = s.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        raise NotFound(f"no organization named {name!r}; create it with `sovhub orgs create {name}`")
    return org


def list_orgs(hub: Hub) -> list[Organization]:
    with hub.db.session() as s:
        return list(s.scalars(select(Organization).order_by(Organization.name)))


def create_key(
    hub: Hub, org_name: str, *, name: str | None = None, limits: dict[str, int] | None = None, actor: str = "cli"
) -> CreatedKey:
    org = get_org(hub, org_name)
    name = (name or "").strip() or None
    if name is not None and len(name) > 120:
        raise InvalidRequest("a key name has at most 120 characters", param="name")
    clean_limits: dict[str, Any] = {}
    for field, value in (limits or {}).items():
        if value is None:
            continue
        if field not in _LIMIT_FIELDS and not field.startswith("budget"):
            raise InvalidRequest(f"unknown limit {field!r}", param=field)
        if int(value) < 0:
            raise InvalidRequest(f"limit {field} must be >= 0, got {value}", param=field)
        clean_limits[field] = int(value)
    prefix = KEY_PREFIX + secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")[:8]
    secret = f"{prefix}_{secrets.token_urlsafe(24)}"
    with hub.db.session() as s:
        row = ApiKey(org_id=org.id, name=name, prefix=prefix, secret_hash=_hash(secret), limits=clean_limits)
        s.add(row)
        s.flush()
        key_id = row.id
    hub.emit("key.created", actor=actor, subject=f"key:{prefix}", org=org.name, limits=clean_limits)
    return CreatedKey(id=key_id, prefix=prefix, secret=secret, org=org.name)


def list_keys(hub: Hub, org_name: str | None = None) -> list[tuple[ApiKey, str]]:
    with hub.db.session() as s:
        stmt = select(ApiKey, Organization.name).join(Organization, Organization.id == ApiKey.org_id)
        if org_name is not None:
            stmt = stmt.where(Organization.name == org_name)
        return [(k, o) for k, o in s.execute(stmt.order_by(ApiKey.id))]


def revoke_key(hub: Hub, prefix: str, *, actor: str = "cli") -> ApiKey:
    with hub.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            raise NotFound(f"no API key with prefix {prefix!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
    cache = hub.services.get("key_cache")
    if isinstance(cache, KeyCache):
        cache.forget_prefix(prefix)
    hub.emit("key.revoked", actor=actor, subject=f"key:{prefix}")
    return row


def authenticate(hub: Hub, secret: str) -> Principal:
    """Resolve an API key to its principal, or raise AuthenticationFailed (a DB read)."""
    prefix = secret.split("_", 1)[0]
    if not secret.startswith(KEY_PREFIX) or "_" not in secret:
        raise AuthenticationFailed("Incorrect API key provided. Keys look like sk-sov-XXXXXXXX_...")
    with hub.db.session() as s:
        found = s.execute(
            select(ApiKey, Organization.name)
            .join(Organization, Organization.id == ApiKey.org_id)
            .where(ApiKey.prefix == prefix)
        ).first()
    if found is None or not hmac.compare_digest(found[0].secret_hash, _hash(secret)):
        raise AuthenticationFailed("Incorrect API key provided.")
    key, org_name = found
    if key.revoked_at is not None:
        raise AuthenticationFailed(f"API key {prefix} was revoked.", code="revoked_api_key")
    return Principal(
        org_id=key.org_id, org_name=org_name, key_id=key.id, key_prefix=prefix, limits=dict(key.limits or {})
    )


class KeyCache:
    """Verified keys, kept for `ttl` seconds so the hot path does not read the database.

    A revocation made in this process takes effect at once; one made elsewhere (CLI, another
    replica) within `ttl` seconds.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> Principal | None:
        digest = _hash(secret)
        item = self._items.get(digest)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, secret: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[_hash(secret)] = (time.monotonic() + self.ttl, principal)

    def forget_prefix(self, prefix: str) -> None:
        with self._lock:
            for digest, (_, principal) in list(self._items.items()):
                if principal.key_prefix == prefix:
                    del self._items[digest]
