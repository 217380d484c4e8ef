"""Batches and their request lines.

Each line is a row with its own lease: the replica running it holds it until ``lease_until``;
when that replica dies, another takes the line over after the lease ends. A line has one
result column, so however many replicas ran it, its custom_id appears once in the output.
Request bodies and results are sealed under the organization's data key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = ["BatchLine", "BatchRow"]


class BatchRow(Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_org_seq", "org_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(8), default="24h")
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_expires_after_s: Mapped[int | None] = mapped_column(Integer)
    #: The carbon-aware plan: windows, reason, emissions against running at once (see schedule.py).
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Who validates or finalizes the batch now (one replica at a time), until when.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BatchLine(Base):
    __tablename__ = "batch_lines"
    __table_args__ = (
        UniqueConstraint("batch_seq", "custom_id", name="uq_batch_lines_custom_id"),
        Index("ix_batch_lines_work", "status", "not_before"),
        Index("ix_batch_lines_batch_line", "batch_seq", "line_no"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_seq: Mapped[int] = mapped_column(ForeignKey("batches.seq", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(512))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: pending, running, succeeded, failed, expired, cancelled
    status: Mapped[str] = mapped_column(String(12), default="pending")
    #: The scheduler's start time for this line (a greener hour); None: at once.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
