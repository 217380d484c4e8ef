"""A person's own access, set by staff in the console: their model tier and quotas over the defaults

Revision ID: 0022
Revises: 0023

(Written on 0020; main added 0023 on 0020 meanwhile, so this follows it: one head.)

Adds ``access_person_profiles`` (one row per person staff changed; none: tier ``open`` and
``access.user_limits``). Rows go with the person (ON DELETE CASCADE).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_person_profiles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=120), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_access_person_profiles_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_access_person_profiles")),
    )


def downgrade() -> None:
    op.drop_table("access_person_profiles")
