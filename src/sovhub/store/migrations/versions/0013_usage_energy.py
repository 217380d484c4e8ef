"""Usage rows record their energy (Wh), emissions (gCO2e), renewable share and how energy was obtained

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("energy_wh", sa.Float(), nullable=True))
    op.add_column("usage_records", sa.Column("co2e_g", sa.Float(), nullable=True))
    op.add_column("usage_records", sa.Column("renewable_share", sa.Float(), nullable=True))
    op.add_column("usage_records", sa.Column("energy_method", sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("energy_method")
        batch.drop_column("renewable_share")
        batch.drop_column("co2e_g")
        batch.drop_column("energy_wh")
