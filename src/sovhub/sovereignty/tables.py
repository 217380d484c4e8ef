"""sovereignty: tables (see docs/architecture.md and docs/sovereignty.md).

Sections: encryption keys, stored API conversations and retention, the audit log, staff access.
Nothing here holds plaintext content: `content` columns are AES-256-GCM blobs under a data key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = [
    "AccessRequest",
    "AuditEntry",
    "AuditHead",
    "AuditSignature",
    "DataKey",
    "OrgRetention",
    "SovereigntyMeta",
    "StoredConversation",
]


# --- keys ---


class SovereigntyMeta(Base):
    """Small facts about this installation, e.g. the master-key check value."""

    __tablename__ = "sovereignty_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DataKey(Base):
    """A per-person or per-organization AES-256 data key, stored only wrapped by the master key.

    Deleting the row is crypto-shredding: every blob under it, in the database and in its
    backups, becomes unreadable.
    """

    __tablename__ = "data_keys"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id", name="uq_data_keys_owner_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(8))  # "user" | "org"
    owner_id: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- conversations (API traffic) and retention ---


class StoredConversation(Base):
    """One API chat exchange, encrypted under its owner's data key, kept until `expires_at`."""

    __tablename__ = "api_conversations"
    __table_args__ = (
        Index("ix_api_conversations_expires_at", "expires_at"),
        Index("ix_api_conversations_owner", "owner_kind", "owner_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    owner_kind: Mapped[str] = mapped_column(String(8))
    owner_id: Mapped[int] = mapped_column(Integer)
    org_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    model: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str | None] = mapped_column(String(80))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrgRetention(Base):
    """An organization's own retention period; 0 days is zero retention (no content stored)."""

    __tablename__ = "org_retention"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    retention_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- audit log ---


class AuditEntry(Base):
    """One hash-chained audit entry: `hash = sha256(prev_hash || canonical(entry))`."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_event", "event"), Index("ix_audit_log_subject", "subject"))

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # ISO 8601 text: hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest entry's number and hash (one row), so a deleted tail is detected too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditSignature(Base):
    """An Ed25519 signature over a chain head, to be anchored outside the hub."""

    __tablename__ = "audit_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- staff access to content (two-person rule) ---


class AccessRequest(Base):
    """Staff access to a person's content: requested by one admin, approved by another, time-limited."""

    __tablename__ = "content_access_requests"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    requested_by: Mapped[str] = mapped_column(String(320))  # the staff member's e-mail, shown to the person
    requested_by_id: Mapped[int | None] = mapped_column(Integer)  # their user id: what the two-person rule compares
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="requested")  # requested|approved|denied
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decided_by_id: Mapped[int | None] = mapped_column(Integer)
    decision_note: Mapped[str | None] = mapped_column(Text)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    legal_hold_reason: Mapped[str | None] = mapped_column(Text)
    notice_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hours: Mapped[float] = mapped_column(Float, default=24.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    uses: Mapped[list[Any]] = mapped_column(JSON, default=list)
