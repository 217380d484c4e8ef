"""assistant: tables (see docs/architecture.md).

Sections: the knowledge base (collections, documents, chunks with their vectors). The web app's
conversations and messages join this module under their own header.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from ..store.base import Base, UTCDateTime, utcnow

__all__ = ["Conversation", "ConversationAttachment", "ConversationMessage", "KbChunk", "KbCollection", "KbDocument"]


# --- knowledge base ---


class KbCollection(Base):
    """A named set of documents searched together (e.g. a ministry's public-service guides)."""

    __tablename__ = "kb_collections"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # Vectors of different models cannot be compared: a collection is bound to one.
    embedding_model: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    # Bumped on every ingest or delete, so each process's in-memory vector index knows it is stale.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KbDocument(Base):
    """One ingested file; `source` identifies it within its collection, `content_hash` detects changes."""

    __tablename__ = "kb_documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "source", name="uq_kb_documents_collection_id_source"),
        # Ids are never reused (SQLite would otherwise hand a deleted row's id to the next one).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("kb_collections.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(500))
    media_type: Mapped[str] = mapped_column(String(40))
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KbChunk(Base):
    """A passage of a document: exact slice [char_start, char_end) of its page's text, and its vector."""

    __tablename__ = "kb_chunks"
    __table_args__ = (
        Index("ix_kb_chunks_collection_id_id", "collection_id", "id"),
        Index("ix_kb_chunks_tsv", "tsv", postgresql_using="gin"),
        # A citation link (/kb/chunks/ID) must never come to point at another passage.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    # Denormalised from the document so one indexed scan loads a collection's vectors.
    collection_id: Mapped[int] = mapped_column(ForeignKey("kb_collections.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    page: Mapped[int | None] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # float32 little-endian, `dim` values (pgvector is not available; the index lives in process).
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # PostgreSQL full text ('simple' configuration, GIN index). Always NULL on SQLite, which keeps
    # its full text in the FTS5 table `kb_chunks_fts` created by the migration instead.
    tsv: Mapped[str | None] = mapped_column(TSVECTOR().with_variant(Text(), "sqlite"))


# --- conversations ---


class Conversation(Base):
    """A person's chat in the web app. The title is encrypted with the person's data key."""

    __tablename__ = "assistant_conversations"
    __table_args__ = (Index("ix_assistant_conversations_user_id_updated_at", "user_id", "updated_at"),)

    # Random, not sequential: a conversation's address says nothing about how many others exist.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationMessage(Base):
    """One turn. `content` is the vault blob of {"text", "citations", "block"} as JSON."""

    __tablename__ = "assistant_messages"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("assistant_conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    model: Mapped[str | None] = mapped_column(String(256))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationAttachment(Base):
    """A document a person attached to a conversation. Only its extracted text is kept, as the vault
    blob (under the person's data key) of {"name", "text"}: the file itself is not stored."""

    __tablename__ = "assistant_attachments"
    __table_args__ = (
        Index("ix_assistant_attachments_conversation_id", "conversation_id"),
        Index("ix_assistant_attachments_user_id", "user_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("assistant_conversations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    media_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
