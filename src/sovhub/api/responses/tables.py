"""Stored responses (/v1/responses with `store`): what `previous_response_id`, retrieve and input items read.

``content`` is an AES-256-GCM blob under the owner's data key (the vault of sovereignty), holding
the response object, its input items and the conversation so far; the other columns say whose it
is and until when it is kept (the owner's retention, as for stored chat content).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ...store.base import Base, UTCDateTime, utcnow

__all__ = ["StoredResponse"]


class StoredResponse(Base):
    __tablename__ = "api_responses"
    __table_args__ = (
        Index("ix_api_responses_expires_at", "expires_at"),
        Index("ix_api_responses_owner", "owner_kind", "owner_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(8))  # "org" | "user": whose data key seals it
    owner_id: Mapped[int] = mapped_column(Integer)
    org_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Written by the replica running a background response; a stale one means that replica stopped.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
