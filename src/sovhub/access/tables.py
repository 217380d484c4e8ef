"""access: web sessions, eID identities, sign-in transactions, organization verification, model tiers, org quotas,
and a person's own tier and quotas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = ["Identity", "ModelTier", "OidcTransaction", "OrgAccess", "PersonAccess", "Verification", "WebSession"]


class Identity(Base):
    """A person as a national eID provider knows them; linked to a hub user."""

    __tablename__ = "access_identities"
    __table_args__ = (
        UniqueConstraint("idp", "subject", name="uq_access_identities_idp_subject"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idp: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    level: Mapped[str | None] = mapped_column(String(16))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    birthdate: Mapped[str | None] = mapped_column(String(10))
    # The national person identifier, when the provider asserts one (IdentityProviderSettings.person_id_claim).
    person_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """One sign-in to the web app. The cookie carries the token; the row holds only its SHA-256.

    A session counts while its row exists, `revoked_at` is unset and `expires_at` is ahead; every
    replica reads the row on each request, so a revocation holds everywhere at once.
    """

    __tablename__ = "access_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    acr: Mapped[str | None] = mapped_column(String(16))
    idp: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(String(64))


class OidcTransaction(Base):
    """A started eID sign-in; consumed exactly once by its callback (replay protection)."""

    __tablename__ = "access_oidc_transactions"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    idp: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str | None] = mapped_column(String(200))
    return_to: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Verification(Base):
    """One request to verify an organization, from the admin's request to a decision."""

    __tablename__ = "access_verifications"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    country: Mapped[str] = mapped_column(String(8))
    registry_number: Mapped[str] = mapped_column(String(64))
    legal_name: Mapped[str] = mapped_column(String(300))
    requested_by: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_identities.id", ondelete="SET NULL"), index=True
    )
    representative_name: Mapped[str | None] = mapped_column(String(400))
    representative_level: Mapped[str | None] = mapped_column(String(16))
    registry_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrgAccess(Base):
    """An organization's access facts: verified or not, its quotas, custom tiers granted."""

    __tablename__ = "access_org_profiles"
    # A registry number belongs to one organization: claimed when the organization is verified.
    __table_args__ = (UniqueConstraint("registry_country", "registry_number", name="uq_access_org_profiles_registry"),)

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verification_id: Mapped[int | None] = mapped_column(Integer)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    registry_country: Mapped[str | None] = mapped_column(String(8))
    registry_number: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelTier(Base):
    """A model's access tier; models without a row are `open`."""

    __tablename__ = "access_model_tiers"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tier: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PersonAccess(Base):
    """A web-assistant person's own access, set by staff: their tier and quotas that replace the defaults.

    A person without a row has tier `open` and ``access.user_limits``. ``limits`` holds only the
    fields staff set; every other field keeps its default.
    """

    __tablename__ = "access_person_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(40))
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
