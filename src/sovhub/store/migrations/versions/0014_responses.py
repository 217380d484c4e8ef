"""Stored responses of /v1/responses (encrypted, with their owner's retention)

Revision ID: 0014
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_kind", sa.String(8), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_api_responses_expires_at", "api_responses", ["expires_at"])
    op.create_index("ix_api_responses_owner", "api_responses", ["owner_kind", "owner_id"])
    op.create_index("ix_api_responses_user_id", "api_responses", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_api_responses_user_id", table_name="api_responses")
    op.drop_index("ix_api_responses_owner", table_name="api_responses")
    op.drop_index("ix_api_responses_expires_at", table_name="api_responses")
    op.drop_table("api_responses")
