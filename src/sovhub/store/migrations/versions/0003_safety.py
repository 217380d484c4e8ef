"""Safety (moderation log, appeals, policy versions) tables

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_policy_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_policy_versions")),
    )
    op.create_index(
        op.f("ix_safety_policy_versions_digest"), "safety_policy_versions", ["digest"], unique=False
    )
    op.create_table(
        "moderation_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("clauses", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=16), nullable=True),
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_log")),
    )
    op.create_index("ix_moderation_log_created", "moderation_log", ["created_at"], unique=False)
    op.create_index(op.f("ix_moderation_log_org_id"), "moderation_log", ["org_id"], unique=False)
    op.create_table(
        "safety_appeals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("log_id", sa.String(length=40), nullable=False),
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["log_id"], ["moderation_log.id"],
            name=op.f("fk_safety_appeals_log_id_moderation_log"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_appeals")),
    )
    op.create_index(op.f("ix_safety_appeals_log_id"), "safety_appeals", ["log_id"], unique=False)
    op.create_index(op.f("ix_safety_appeals_org_id"), "safety_appeals", ["org_id"], unique=False)
    op.create_index(op.f("ix_safety_appeals_status"), "safety_appeals", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_safety_appeals_status"), table_name="safety_appeals")
    op.drop_index(op.f("ix_safety_appeals_org_id"), table_name="safety_appeals")
    op.drop_index(op.f("ix_safety_appeals_log_id"), table_name="safety_appeals")
    op.drop_table("safety_appeals")
    op.drop_index(op.f("ix_moderation_log_org_id"), table_name="moderation_log")
    op.drop_index("ix_moderation_log_created", table_name="moderation_log")
    op.drop_table("moderation_log")
    op.drop_index(op.f("ix_safety_policy_versions_digest"), table_name="safety_policy_versions")
    op.drop_table("safety_policy_versions")
