"""Usage rows of batch lines carry a unique key per line: a line run by two replicas is metered once

Revision ID: 0018
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("batch_line_key", sa.String(length=80), nullable=True))
    op.create_index("uq_usage_batch_line_key", "usage_records", ["batch_line_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_usage_batch_line_key", table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("batch_line_key")
