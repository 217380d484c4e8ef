"""Documents a person attaches to a conversation (extracted text, encrypted with their data key)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistant_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["assistant_conversations.id"],
            name=op.f("fk_assistant_attachments_conversation_id_assistant_conversations"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_assistant_attachments_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assistant_attachments")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("assistant_attachments") as batch:
        batch.create_index("ix_assistant_attachments_conversation_id", ["conversation_id"], unique=False)
        batch.create_index("ix_assistant_attachments_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assistant_attachments", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_assistant_attachments_user_id")
        batch.drop_index("ix_assistant_attachments_conversation_id")
    op.drop_table("assistant_attachments")
