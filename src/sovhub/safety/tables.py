"""Safety tables: policy versions in force, moderation decisions (never content) and appeals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = ["Appeal", "ModerationLog", "PolicyVersion"]


class PolicyVersion(Base):
    """Every distinct policy the hub loaded, with the diff from the one before (published)."""

    __tablename__ = "safety_policy_versions"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    content: Mapped[str] = mapped_column(Text)
    diff: Mapped[str] = mapped_column(Text, default="")
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModerationLog(Base):
    """One moderation decision (block, warn, redact). Content only with the person's consent."""

    __tablename__ = "moderation_log"
    __table_args__ = (Index("ix_moderation_log_created", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    direction: Mapped[str] = mapped_column(String(10))  # input | output
    action: Mapped[str] = mapped_column(String(10))  # warn | redact | block
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    clauses: Mapped[list[str]] = mapped_column(JSON, default=list)
    policy_version: Mapped[str] = mapped_column(String(64))
    lang: Mapped[str | None] = mapped_column(String(16))
    principal: Mapped[str] = mapped_column(String(80))
    org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    content: Mapped[str | None] = mapped_column(Text)


class Appeal(Base):
    __tablename__ = "safety_appeals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    log_id: Mapped[str] = mapped_column(ForeignKey("moderation_log.id", ondelete="CASCADE"), index=True)
    principal: Mapped[str] = mapped_column(String(80))
    org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="filed", index=True)  # filed | upheld | overturned
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
