"""Credits in the web app: kinds of organization, partners' staff, notices, low-balance crossings

Revision ID: 0017
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("kind", sa.String(length=40), nullable=True))
    op.add_column("credit_grants", sa.Column("low_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "credit_partner_members",
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["credit_partners.id"],
                                name=op.f("fk_credit_partner_members_partner_id_credit_partners"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_credit_partner_members_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("partner_id", "user_id", name=op.f("pk_credit_partner_members")),
    )
    op.create_index(op.f("ix_credit_partner_members_user_id"), "credit_partner_members", ["user_id"], unique=False)
    op.create_table(
        "credit_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dismissed_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_credit_notices_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notices")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_credit_notices_org_id"), "credit_notices", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_credit_notices_org_id"), table_name="credit_notices")
    op.drop_table("credit_notices")
    op.drop_index(op.f("ix_credit_partner_members_user_id"), table_name="credit_partner_members")
    op.drop_table("credit_partner_members")
    with op.batch_alter_table("credit_grants", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("low_since")
    with op.batch_alter_table("organizations", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("kind")
