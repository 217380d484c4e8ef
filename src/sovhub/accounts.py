"""Organizations, users and API keys: the domain service (no HTTP here).

API keys look like ``sk-sov-<prefix>_<secret>``. Only ``sk-sov-<prefix>`` (visible, unique)
and the SHA-256 of the whole key are stored; keys carry 190 bits of randomness, so a fast
hash is the right tool (a slow password hash would only add latency to every request).

Least privilege: a key holds the scope ``inference`` (call models) and maybe ``admin`` (also
list, create and revoke its organization's keys; it implies ``inference``). A key minted by a
key (``creator``) gets at most its creator's scopes, limits no higher than the creator's (a
limit the creator has and the request leaves out is inherited) and an expiry no later than the
creator's; revoking a key revokes every key minted from it, down the whole chain. An operator
(CLI, staff console) may create any key; an organization's first active key is ``admin`` unless
a scope is given, later ones ``inference``.

Staff keys: the scope ``staff`` (the fund office's API, ``/hub/v1/admin/...``) is held only by a
key bound to a staff member (``api_keys.staff_user_id``), made by :func:`create_staff_key` from
the operator's CLI. It is in no list a key may ask for (:data:`SCOPES`), so no key, admin or not,
can mint one, and it implies nothing else (a staff key calls no model and manages no keys).
Every call re-reads the member: a staff key stops working once its person loses ``is_staff``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from sovhub import linear_re

from .errors import AuthenticationFailed, Conflict, InsufficientScope, InvalidRequest, NotFound, PermissionDenied
from .hub import Hub
from .members import MEMBER_ROLES, add_member, memberships
from .pipeline import Principal
from .store.base import as_utc, utcnow
from .store.tables import ApiKey, Organization, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "ADMIN", "INFERENCE", "MEMBER_ROLES", "SCOPES", "STAFF", "CreatedKey", "KeyCache", "add_member", "create_key",
    "create_org", "create_staff_key", "get_org", "list_keys", "memberships", "require_scope", "revoke_key",
    "staff_of_key", "validate_scopes",
]

KEY_PREFIX = "sk-sov-"
_NAME_RE = linear_re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,119}$")
_LIMIT_FIELDS = ("rpm", "tpm", "rpd", "tpd")
INFERENCE, ADMIN = "inference", "admin"
SCOPES = (INFERENCE, ADMIN)
#: Not in SCOPES: only create_staff_key gives it.
STAFF = "staff"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: int
    prefix: str
    secret: str
    org: str
    scopes: tuple[str, ...] = (INFERENCE,)
    limits: Mapping[str, int] | None = None
    expires_at: datetime | None = None


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


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes, normalised: ``admin`` implies ``inference``; order as in :data:`SCOPES`."""
    given = {str(x).strip().lower() for x in scopes}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise InvalidRequest(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}", param="scopes")
    if not given:
        raise InvalidRequest(f"give at least one scope ({', '.join(SCOPES)})", param="scopes")
    if ADMIN in given:
        given.add(INFERENCE)
    return tuple(x for x in SCOPES if x in given)


def require_scope(principal: Principal, scope: str) -> None:
    """Raise InsufficientScope unless the calling key holds `scope`."""
    if scope not in principal.scopes:
        how = "--staff EMAIL" if scope == STAFF else f"--scope {scope}"
        raise InsufficientScope(
            f"this API key lacks the scope {scope!r}; an operator creates a key with it "
            f"(`sovhub keys create --org NAME {how}`)",
            extra={"required_scope": scope},
        )


def _clean_limits(limits: Mapping[str, int | None] | None) -> dict[str, int]:
    clean: dict[str, int] = {}
    for field, value in (limits or {}).items():
        if value is None:
            continue
        if field not in _LIMIT_FIELDS and not field.startswith("budget"):
            raise InvalidRequest(f"unknown limit {field!r}", param=field)
        if int(value) < 0:
            raise InvalidRequest(f"limit {field} must be >= 0, got {value}", param=field)
        clean[field] = int(value)
    return clean


def _within_creator(
    s: Session, creator: Principal, org_id: int, scopes: tuple[str, ...] | None, limits: dict[str, int],
    expires_at: datetime | None,
) -> tuple[ApiKey, tuple[str, ...], dict[str, int], datetime | None]:
    """Check a key-made key against its creator, read (and row-locked) from the database, not a cache."""
    # FOR UPDATE: a revocation of the creator waits for this insert, then sees the child and revokes it too.
    parent = s.scalar(select(ApiKey).where(ApiKey.id == creator.key_id).with_for_update())
    if parent is None or parent.org_id != org_id:
        raise InsufficientScope("only a key of this organization may create its keys")
    if parent.revoked_at is not None:
        raise AuthenticationFailed(f"API key {parent.prefix} was revoked.", code="revoked_api_key")
    parent_expiry = parent.expires_at
    if parent_expiry is not None and parent_expiry <= utcnow():
        raise AuthenticationFailed(f"API key {parent.prefix} has expired.", code="expired_api_key")
    held = tuple(parent.scopes or ())
    if ADMIN not in held:
        raise InsufficientScope("only a key with the scope 'admin' may create keys", extra={"required_scope": ADMIN})
    scopes = scopes or (INFERENCE,)
    beyond = [x for x in scopes if x not in held]
    if beyond:
        raise InsufficientScope(f"a key cannot grant the scope {beyond[0]!r}, which it does not hold", param="scopes")
    narrowed = dict(limits)
    for field, ceiling in (parent.limits or {}).items():
        if field not in narrowed:
            narrowed[field] = int(ceiling)
        elif narrowed[field] > int(ceiling):
            raise InsufficientScope(
                f"limit {field}={narrowed[field]} exceeds the creating key's {field}={int(ceiling)}", param=field
            )
    if parent_expiry is not None:
        if expires_at is None:
            expires_at = parent_expiry
        elif expires_at > parent_expiry:
            raise InsufficientScope(
                f"expires_at {expires_at.isoformat()} is later than the creating key's "
                f"{parent_expiry.isoformat()}", param="expires_at",
            )
    return parent, scopes, narrowed, expires_at


def create_key(
    hub: Hub,
    org_name: str,
    *,
    name: str | None = None,
    limits: Mapping[str, int | None] | None = None,
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
    creator: Principal | None = None,
    actor: str = "cli",
) -> CreatedKey:
    """Create a key of `org_name`; `creator` is the calling key when a key mints one (see the module doc)."""
    org = get_org(hub, org_name)
    name = (name or "").strip() or None
    if name is not None and len(name) > 120:
        raise InvalidRequest("a key name has at most 120 characters", param="name")
    clean_limits = _clean_limits(limits)
    wanted = validate_scopes(scopes) if scopes is not None else None
    if expires_at is not None:
        expires_at = as_utc(expires_at)
        if expires_at <= utcnow():
            raise InvalidRequest(f"expires_at {expires_at.isoformat()} is not in the future", param="expires_at")
    prefix = KEY_PREFIX + secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")[:8]
    secret = f"{prefix}_{secrets.token_urlsafe(24)}"
    parent_id: int | None = None
    with hub.db.session() as s:
        if creator is not None:
            parent, wanted, clean_limits, expires_at = _within_creator(
                s, creator, org.id, wanted, clean_limits, expires_at
            )
            parent_id = parent.id
        elif wanted is None:
            has_active = s.scalar(
                select(ApiKey.id).where(ApiKey.org_id == org.id, ApiKey.revoked_at.is_(None)).limit(1)
            )
            wanted = (INFERENCE,) if has_active is not None else validate_scopes([ADMIN])
        row = ApiKey(
            org_id=org.id, name=name, prefix=prefix, secret_hash=_hash(secret), limits=clean_limits,
            scopes=list(wanted), parent_key_id=parent_id, expires_at=expires_at,
        )
        s.add(row)
        s.flush()
        key_id = row.id
    hub.emit("key.created", actor=actor, subject=f"key:{prefix}", org=org.name, limits=clean_limits,
             scopes=list(wanted), expires_at=expires_at.isoformat() if expires_at else None,
             created_by=creator.key_prefix if creator is not None else None)
    return CreatedKey(id=key_id, prefix=prefix, secret=secret, org=org.name, scopes=wanted,
                      limits=clean_limits, expires_at=expires_at)


def create_staff_key(
    hub: Hub, org_name: str, email: str, *, name: str | None = None, expires_at: datetime | None = None,
    actor: str = "cli",
) -> CreatedKey:
    """Create a key with only the scope ``staff``, acting as staff member `email` (operator only: CLI)."""
    org = get_org(hub, org_name)
    name = (name or "").strip() or None
    if name is not None and len(name) > 120:
        raise InvalidRequest("a key name has at most 120 characters", param="name")
    if expires_at is not None:
        expires_at = as_utc(expires_at)
        if expires_at <= utcnow():
            raise InvalidRequest(f"expires_at {expires_at.isoformat()} is not in the future", param="expires_at")
    prefix = KEY_PREFIX + secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")[:8]
    secret = f"{prefix}_{secrets.token_urlsafe(24)}"
    with hub.db.session() as s:
        user = s.scalar(select(User).where(User.email == email.strip()))
        if user is None:
            raise NotFound(f"no user {email!r}", param="staff")
        if not user.is_staff:
            raise InvalidRequest(f"{email} is not staff; a staff key acts as a staff member", param="staff",
                                 code="not_staff")
        row = ApiKey(org_id=org.id, name=name, prefix=prefix, secret_hash=_hash(secret), limits={},
                     scopes=[STAFF], parent_key_id=None, expires_at=expires_at, staff_user_id=user.id)
        s.add(row)
        s.flush()
        key_id, user_label = row.id, f"user:{user.id}:{user.email}"
    hub.emit("key.created", actor=actor, subject=f"key:{prefix}", org=org.name, limits={}, scopes=[STAFF],
             expires_at=expires_at.isoformat() if expires_at else None, created_by=None, staff=user_label)
    return CreatedKey(id=key_id, prefix=prefix, secret=secret, org=org.name, scopes=(STAFF,), limits={},
                      expires_at=expires_at)


def staff_of_key(hub: Hub, key_id: int | None) -> tuple[int, str]:
    """(user id, e-mail) of the staff member a staff key acts as, read now; refused unless they are staff."""
    with hub.db.session() as s:
        found = s.execute(select(User.id, User.email, User.is_staff, ApiKey.scopes)
                          .join(ApiKey, ApiKey.staff_user_id == User.id).where(ApiKey.id == key_id)).first()
    if found is None or STAFF not in (found[3] or ()):
        raise InsufficientScope("this endpoint needs a staff key (`sovhub keys create --org NAME --staff EMAIL`)",
                                extra={"required_scope": STAFF})
    if not found[2]:
        raise PermissionDenied(f"{found[1]} is no longer staff; their staff keys do nothing", code="not_staff")
    return int(found[0]), str(found[1])


def list_keys(hub: Hub, org_name: str | None = None) -> list[tuple[ApiKey, str]]:
    with hub.db.session() as s:
        stmt = select(ApiKey, Organization.name).join(Organization, Organization.id == ApiKey.org_id)
        if org_name is not None:
            stmt = stmt.where(Organization.name == org_name)
        return [(k, o) for k, o in s.execute(stmt.order_by(ApiKey.id))]


def revoke_key(hub: Hub, prefix: str, *, actor: str = "cli") -> ApiKey:
    """Revoke a key and every key minted from it (children, their children, ...)."""
    revoked: list[str] = []
    with hub.db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == prefix).with_for_update())
        if row is None:
            raise NotFound(f"no API key with prefix {prefix!r}")
        now = utcnow()
        if row.revoked_at is None:
            row.revoked_at = now
        frontier, seen = [row.id], {row.id}
        while frontier:
            children = list(s.scalars(select(ApiKey).where(ApiKey.parent_key_id.in_(frontier))))
            frontier = [c.id for c in children if c.id not in seen]
            seen.update(frontier)
            for child in children:
                if child.revoked_at is None:
                    child.revoked_at = now
                    revoked.append(child.prefix)
    cache = hub.services.get(KeyCache)
    for gone in (prefix, *revoked):
        cache.forget_prefix(gone)
    hub.emit("key.revoked", actor=actor, subject=f"key:{prefix}", with_children=revoked)
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
    expires_at = key.expires_at
    if expires_at is not None and expires_at <= utcnow():
        raise AuthenticationFailed(f"API key {prefix} expired at {expires_at.isoformat()}.", code="expired_api_key")
    return Principal(
        org_id=key.org_id, org_name=org_name, key_id=key.id, key_prefix=prefix, limits=dict(key.limits or {}),
        scopes=frozenset(key.scopes or ()), expires_at=expires_at,
    )


class KeyCache:
    """Verified keys, kept for `ttl` seconds so the hot path does not read the database.

    A revocation made in this process takes effect at once; one made elsewhere (CLI, another
    replica) as soon as its invalidation arrives through Redis (sovhub.fleet.invalidation), or
    within `ttl` seconds without it.
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
        expires_at = item[1].expires_at
        if expires_at is not None and expires_at <= utcnow():
            return None  # authenticate() then refuses it with expired_api_key
        return item[1]

    def put(self, secret: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[_hash(secret)] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        """Forget every key (another process changed keys or organizations)."""
        with self._lock:
            self._items.clear()

    def forget_prefix(self, prefix: str) -> None:
        with self._lock:
            for digest, (_, principal) in list(self._items.items()):
                if principal.key_prefix == prefix:
                    del self._items[digest]


def principal_for_key(hub: Hub, key_id: int) -> Principal:
    """The principal of a stored key (deferred work runs as the key that asked for it); refused when the key
    was revoked or expired since."""
    with hub.db.session() as s:
        found = s.execute(select(ApiKey, Organization.name).join(Organization, Organization.id == ApiKey.org_id)
                          .where(ApiKey.id == key_id)).first()
    if found is None:
        raise AuthenticationFailed("the API key that created this work no longer exists.", code="invalid_api_key")
    key, org_name = found
    if key.revoked_at is not None:
        raise AuthenticationFailed(f"API key {key.prefix} was revoked.", code="revoked_api_key")
    expires_at = as_utc(key.expires_at) if key.expires_at is not None else None
    if expires_at is not None and expires_at <= utcnow():
        raise AuthenticationFailed(f"API key {key.prefix} expired at {expires_at.isoformat()}.", code="expired_api_key")
    return Principal(org_id=key.org_id, org_name=org_name, key_id=key.id, key_prefix=key.prefix,
                     limits=dict(key.limits or {}), scopes=frozenset(key.scopes or ()), expires_at=expires_at)
