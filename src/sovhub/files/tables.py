"""Stored files and their encrypted chunks.

Content lives in the database, not on a replica's disk, so every replica serves every file; each
chunk is sealed under the owning organization's data key (erasing the organization's key makes
every copy unreadable, backups included).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = ["FileChunk", "StoredFile"]


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_org_purpose", "org_id", "purpose"),
        {"sqlite_autoincrement": True},
    )

    #: Internal order of uploads (the list's cursor); never shown.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: False while the upload streams in: such a file is invisible and removed if the upload dies.
    complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class FileChunk(Base):
    __tablename__ = "file_chunks"

    file_seq: Mapped[int] = mapped_column(ForeignKey("files.seq", ondelete="CASCADE"), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
