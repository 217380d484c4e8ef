"""Key scopes, creator and expiry; one organization per registry number; eID person identifier

Revision ID: 0008
Revises: 0005

What it does to existing rows:

- Every existing API key gets ``scopes = ["inference"]``: it keeps calling models but can no longer
  list, create or revoke keys. Nothing recorded which existing key was meant to manage the others,
  and granting ``admin`` to all of them would keep a leaked trial key's power to mint keys. An
  operator gives an organization its admin key with ``sovhub keys create --org NAME --scope admin``
  (or the staff console). Existing keys have no creator and no expiry.
- Each verified organization claims the registry number of the verification that approved it
  (country + number, the number normalised like the registry lookup does). Where two verified
  organizations already share a number, the one verified first keeps it and the other is left
  without a claim (it stays verified; staff see the duplicate when it next verifies).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _number(value: str) -> str:
    # Same as access.registry.normalize_number; copied so the migration never changes with the code.
    return "".join(c for c in value if c.isalnum()).upper()


def upgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default=sa.text("'[\"inference\"]'")))
        batch.add_column(sa.Column("parent_key_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_api_keys_parent_key_id_api_keys"), "api_keys", ["parent_key_id"], ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(batch.f("ix_api_keys_parent_key_id"), ["parent_key_id"], unique=False)

    with op.batch_alter_table("access_identities", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("person_id", sa.String(length=255), nullable=True))

    with op.batch_alter_table("access_org_profiles") as batch:
        batch.add_column(sa.Column("registry_country", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("registry_number", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("uq_access_org_profiles_registry", ["registry_country", "registry_number"])

    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT p.org_id, v.country, v.registry_number FROM access_org_profiles p "
        "JOIN access_verifications v ON v.id = p.verification_id "
        "WHERE p.verified_at IS NOT NULL ORDER BY p.verified_at, p.org_id"
    )).all()
    claimed: set[tuple[str, str]] = set()
    for org_id, country, number in rows:
        claim = (str(country).strip().upper(), _number(str(number)))
        if not claim[1] or claim in claimed or claim[0] == "-":
            continue
        claimed.add(claim)
        conn.execute(
            sa.text("UPDATE access_org_profiles SET registry_country = :c, registry_number = :n WHERE org_id = :o"),
            {"c": claim[0], "n": claim[1], "o": org_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("access_org_profiles") as batch:
        batch.drop_constraint("uq_access_org_profiles_registry", type_="unique")
        batch.drop_column("registry_number")
        batch.drop_column("registry_country")
    with op.batch_alter_table("access_identities", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("person_id")
    with op.batch_alter_table("api_keys", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index(batch.f("ix_api_keys_parent_key_id"))
        batch.drop_constraint(batch.f("fk_api_keys_parent_key_id_api_keys"), type_="foreignkey")
        batch.drop_column("expires_at")
        batch.drop_column("parent_key_id")
        batch.drop_column("scopes")
