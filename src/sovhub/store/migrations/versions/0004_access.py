"""Verified access (identity, verification, tiers, quotas) tables

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "access_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idp", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("given_name", sa.String(length=200), nullable=True),
        sa.Column("family_name", sa.String(length=200), nullable=True),
        sa.Column("birthdate", sa.String(length=10), nullable=True),
        _ts("created_at"),
        _ts("last_login_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_identities_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_identities")),
        sa.UniqueConstraint("idp", "subject", name="uq_access_identities_idp_subject"),
    )
    with op.batch_alter_table("access_identities") as batch:
        batch.create_index(batch.f("ix_access_identities_user_id"), ["user_id"], unique=False)

    op.create_table(
        "access_oidc_transactions",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("idp", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=True),
        sa.Column("return_to", sa.String(length=500), nullable=True),
        _ts("created_at"),
        _ts("consumed_at", nullable=True),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_access_oidc_transactions")),
    )
    with op.batch_alter_table("access_oidc_transactions") as batch:
        batch.create_index(batch.f("ix_access_oidc_transactions_created_at"), ["created_at"], unique=False)

    op.create_table(
        "access_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=8), nullable=False),
        sa.Column("registry_number", sa.String(length=64), nullable=False),
        sa.Column("legal_name", sa.String(length=300), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("representative_name", sa.String(length=400), nullable=True),
        sa.Column("representative_level", sa.String(length=16), nullable=True),
        sa.Column("registry_result", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("decided_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_access_verifications_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["access_identities.id"],
            name=op.f("fk_access_verifications_identity_id_access_identities"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_verifications")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_verifications_token_hash")),
    )
    with op.batch_alter_table("access_verifications") as batch:
        batch.create_index(batch.f("ix_access_verifications_org_id"), ["org_id"], unique=False)
        batch.create_index(batch.f("ix_access_verifications_status"), ["status"], unique=False)
        batch.create_index(batch.f("ix_access_verifications_identity_id"), ["identity_id"], unique=False)

    op.create_table(
        "access_org_profiles",
        sa.Column("org_id", sa.Integer(), nullable=False),
        _ts("verified_at", nullable=True),
        sa.Column("verification_id", sa.Integer(), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_access_org_profiles_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_access_org_profiles")),
    )

    op.create_table(
        "access_model_tiers",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_access_model_tiers")),
    )


def downgrade() -> None:
    op.drop_table("access_model_tiers")
    op.drop_table("access_org_profiles")
    with op.batch_alter_table("access_verifications") as batch:
        batch.drop_index(batch.f("ix_access_verifications_identity_id"))
        batch.drop_index(batch.f("ix_access_verifications_status"))
        batch.drop_index(batch.f("ix_access_verifications_org_id"))
    op.drop_table("access_verifications")
    with op.batch_alter_table("access_oidc_transactions") as batch:
        batch.drop_index(batch.f("ix_access_oidc_transactions_created_at"))
    op.drop_table("access_oidc_transactions")
    with op.batch_alter_table("access_identities") as batch:
        batch.drop_index(batch.f("ix_access_identities_user_id"))
    op.drop_table("access_identities")
