"""Assistant (conversations, knowledge base) tables

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    # --- knowledge base ---
    op.create_table(
        "kb_collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_collections")),
        sa.UniqueConstraint("name", name=op.f("uq_kb_collections_name")),
    )
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["kb_collections.id"],
            name=op.f("fk_kb_documents_collection_id_kb_collections"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_documents")),
        sa.UniqueConstraint("collection_id", "source", name="uq_kb_documents_collection_id_source"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("kb_documents") as batch:
        batch.create_index(batch.f("ix_kb_documents_collection_id"), ["collection_id"], unique=False)
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("tsv", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"], ["kb_collections.id"],
            name=op.f("fk_kb_chunks_collection_id_kb_collections"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["kb_documents.id"],
            name=op.f("fk_kb_chunks_document_id_kb_documents"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_chunks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("kb_chunks") as batch:
        batch.create_index("ix_kb_chunks_collection_id_id", ["collection_id", "id"], unique=False)
        batch.create_index(batch.f("ix_kb_chunks_document_id"), ["document_id"], unique=False)
        batch.create_index("ix_kb_chunks_tsv", ["tsv"], unique=False, postgresql_using="gin")

    # SQLite's full text lives in an FTS5 table, outside the models on purpose (PostgreSQL uses the
    # `tsv` column). The service writes it; a trigger removes a chunk's row when the chunk goes
    # (directly or by cascade), so retrieval never sees a deleted passage.
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5("
            "body, collection_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')"
        )
        # Document frequency per term, so that very common words can be left out of queries.
        op.execute("CREATE VIRTUAL TABLE kb_chunks_fts_terms USING fts5vocab(kb_chunks_fts, row)")
        op.execute(
            "CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN "
            "DELETE FROM kb_chunks_fts WHERE rowid = old.id; END"
        )

    # --- conversations ---
    op.create_table(
        "assistant_conversations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.LargeBinary(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_assistant_conversations_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_conversations")),
    )
    with op.batch_alter_table("assistant_conversations") as batch:
        batch.create_index("ix_assistant_conversations_user_id_updated_at", ["user_id", "updated_at"], unique=False)
    op.create_table(
        "assistant_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["assistant_conversations.id"],
            name=op.f("fk_assistant_messages_conversation_id_assistant_conversations"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_messages")),
    )
    with op.batch_alter_table("assistant_messages") as batch:
        batch.create_index(batch.f("ix_assistant_messages_conversation_id"), ["conversation_id"], unique=False)


def downgrade() -> None:
    # --- conversations ---
    with op.batch_alter_table("assistant_messages") as batch:
        batch.drop_index(batch.f("ix_assistant_messages_conversation_id"))
    op.drop_table("assistant_messages")
    with op.batch_alter_table("assistant_conversations") as batch:
        batch.drop_index("ix_assistant_conversations_user_id_updated_at")
    op.drop_table("assistant_conversations")
    # --- knowledge base ---
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS kb_chunks_fts_delete")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts_terms")
        op.execute("DROP TABLE IF EXISTS kb_chunks_fts")
    with op.batch_alter_table("kb_chunks") as batch:
        batch.drop_index("ix_kb_chunks_tsv")
        batch.drop_index(batch.f("ix_kb_chunks_document_id"))
        batch.drop_index("ix_kb_chunks_collection_id_id")
    op.drop_table("kb_chunks")
    with op.batch_alter_table("kb_documents") as batch:
        batch.drop_index(batch.f("ix_kb_documents_collection_id"))
    op.drop_table("kb_documents")
    op.drop_table("kb_collections")
