"""Core tables: organizations, users, API keys, backends and metered usage.

Tables whose ids are named outside the row (in cookies, audit entries, exports, URLs, commands)
are AUTOINCREMENT on SQLite (``sqlite_autoincrement``): without it SQLite hands a new row the
highest id plus one, so deleting the newest row gives its id to the next one. PostgreSQL's
sequences never hand an id out twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow

__all__ = ["ApiKey", "BackendRow", "Membership", "Organization", "UsageRecord", "User"]


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    #: What kind of organization it is (``sovhub.credits.eligibility.ORG_KINDS``), as staff recorded it.
    kind: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default="member")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # "inference" (call models) or "inference" + "admin" (also manage the organization's keys).
    scopes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["inference"])
    # The key that minted this one through the API (None: made by an operator); revoked with it.
    parent_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A staff key (scope "staff", minted only by the operator's CLI) acts as this staff member.
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BackendRow(Base):
    __tablename__ = "backends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    url: Mapped[str | None] = mapped_column(Text)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    jurisdiction: Mapped[str | None] = mapped_column(String(8))
    operator: Mapped[str | None] = mapped_column(String(200))
    # Plaintext only in databases from before migration 0009, sealed (and cleared) at the next start.
    api_key: Mapped[str | None] = mapped_column(Text)
    api_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_org_ts", "org_id", "ts"),
        Index("uq_usage_batch_line_key", "batch_line_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str | None] = mapped_column(String(80))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[int] = mapped_column(Integer, default=200)
    # True when the backend reported no usage and the hub counted the tokens itself (docs/api.md).
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The batch the request ran in (None: interactive); batch work is priced at the batch discount.
    batch_id: Mapped[str | None] = mapped_column(String(40))
    # A batch line's row: "<batch>:<line>:<n>", unique, so a line run twice (lease taken over) is metered once.
    batch_line_key: Mapped[str | None] = mapped_column(String(80))
    # Energy and carbon of the request, and how they were obtained (docs/energy.md).
    energy_wh: Mapped[float | None] = mapped_column(Float)
    co2e_g: Mapped[float | None] = mapped_column(Float)
    renewable_share: Mapped[float | None] = mapped_column(Float)
    energy_method: Mapped[str | None] = mapped_column(String(24))
