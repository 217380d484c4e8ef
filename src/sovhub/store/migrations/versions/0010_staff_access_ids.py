"""Staff access requests record the authenticated staff members' user ids

Revision ID: 0010
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("content_access_requests", sa.Column("requested_by_id", sa.Integer(), nullable=True))
    op.add_column("content_access_requests", sa.Column("decided_by_id", sa.Integer(), nullable=True))
    # Requests made before: the e-mails they name, where such a staff account still exists. A request
    # left without a requester id cannot be approved (the two people could not be told apart).
    op.execute("UPDATE content_access_requests SET requested_by_id = (SELECT users.id FROM users "
               "WHERE users.email = content_access_requests.requested_by)")
    op.execute("UPDATE content_access_requests SET decided_by_id = (SELECT users.id FROM users "
               "WHERE users.email = content_access_requests.decided_by) WHERE decided_by IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("content_access_requests", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("decided_by_id")
        batch.drop_column("requested_by_id")
