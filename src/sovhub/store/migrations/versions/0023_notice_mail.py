"""Credit notices carry their e-mail delivery: attempts, the next try, who was mailed, when it was done

Revision ID: 0023
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_notices") as batch:
        batch.add_column(sa.Column("mail_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("mail_next_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("mail_sent_to", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credit_notices") as batch:
        for column in ("mailed_at", "mail_sent_to", "mail_next_at", "mail_attempts"):
            batch.drop_column(column)
