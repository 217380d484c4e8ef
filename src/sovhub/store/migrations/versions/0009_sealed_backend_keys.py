"""Upstream API keys sealed by the vault: backends.api_key_sealed

Revision ID: 0009
Revises: 0005

Migrations run without the master key, so this adds the column only; the first start after it
(or `sovhub backends list`) seals every plaintext `api_key` and clears it
(`backends.catalog.seal_plaintext_keys`). Downgrading drops the sealed keys (without the master
key they cannot be turned back into plaintext): add those backends again after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backends") as batch:
        batch.add_column(sa.Column("api_key_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backends") as batch:
        batch.drop_column("api_key_sealed")
