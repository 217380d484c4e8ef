"""Staff keys: an API key may be bound to a staff member (the scope ``staff``, the fund office's API)

Revision ID: 0019
Revises: 0017

Adds ``api_keys.staff_user_id``. Existing keys get NULL: none of them is a staff key. Only the
operator's CLI (``sovhub keys create --staff EMAIL``) sets it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("staff_user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f("fk_api_keys_staff_user_id_users"), "users", ["staff_user_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index(batch.f("ix_api_keys_staff_user_id"), ["staff_user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index(batch.f("ix_api_keys_staff_user_id"))
        batch.drop_constraint(batch.f("fk_api_keys_staff_user_id_users"), type_="foreignkey")
        batch.drop_column("staff_user_id")
