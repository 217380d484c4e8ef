"""Credits: partners, programmes, grants, applications, prices and the double-entry ledger

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('ref_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('no_overdraft', sa.Boolean(), nullable=False),
    sa.Column('debits_posted', sa.BigInteger(), nullable=False),
    sa.Column('credits_posted', sa.BigInteger(), nullable=False),
    sa.Column('debits_pending', sa.BigInteger(), nullable=False),
    sa.Column('credits_pending', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('NOT no_overdraft OR debits_posted + debits_pending <= credits_posted', name=op.f('ck_credit_accounts_no_overdraft')),
    sa.CheckConstraint('debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0', name=op.f('ck_credit_accounts_totals_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_accounts')),
    sa.UniqueConstraint('kind', 'ref_id', name='uq_credit_accounts_kind_ref'),
    sqlite_autoincrement=True
    )
    op.create_table('credit_journal_cursor',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('position', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_credit_journal_cursor'))
    )
    op.create_table('credit_partners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_partners')),
    sa.UniqueConstraint('name', name=op.f('uq_credit_partners_name')),
    sqlite_autoincrement=True
    )
    op.create_table('credit_prices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('input_per_1m', sa.BigInteger(), nullable=False),
    sa.Column('output_per_1m', sa.BigInteger(), nullable=False),
    sa.Column('embedding_per_1m', sa.BigInteger(), nullable=False),
    sa.Column('moderation_per_request', sa.BigInteger(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_prices')),
    sa.UniqueConstraint('model', 'effective_from', name='uq_credit_prices_model_from'),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_credit_prices_model'), 'credit_prices', ['model'], unique=False)
    op.create_table('credit_programmes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('budget', sa.BigInteger(), nullable=False),
    sa.Column('opens_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('require_verified', sa.Boolean(), nullable=False),
    sa.Column('jurisdictions', sa.JSON(), nullable=False),
    sa.Column('org_kinds', sa.JSON(), nullable=False),
    sa.Column('max_grant', sa.BigInteger(), nullable=True),
    sa.Column('grant_validity_days', sa.Integer(), nullable=True),
    sa.Column('models', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_programmes')),
    sa.UniqueConstraint('name', name=op.f('uq_credit_programmes_name')),
    sqlite_autoincrement=True
    )
    op.create_table('credit_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('applied_by', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_by_user_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('grant_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_credit_applications_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['programme_id'], ['credit_programmes.id'], name=op.f('fk_credit_applications_programme_id_credit_programmes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_applications')),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_credit_applications_org_id'), 'credit_applications', ['org_id'], unique=False)
    op.create_index(op.f('ix_credit_applications_programme_id'), 'credit_applications', ['programme_id'], unique=False)
    op.create_index(op.f('ix_credit_applications_status'), 'credit_applications', ['status'], unique=False)
    op.create_table('credit_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('application_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_credit_grants_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['programme_id'], ['credit_programmes.id'], name=op.f('fk_credit_grants_programme_id_credit_programmes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_grants')),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_credit_grants_org_id'), 'credit_grants', ['org_id'], unique=False)
    op.create_index(op.f('ix_credit_grants_programme_id'), 'credit_grants', ['programme_id'], unique=False)
    op.create_table('credit_partner_usage',
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['credit_partners.id'], name=op.f('fk_credit_partner_usage_partner_id_credit_partners')),
    sa.ForeignKeyConstraint(['programme_id'], ['credit_programmes.id'], name=op.f('fk_credit_partner_usage_programme_id_credit_programmes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('programme_id', 'partner_id', name=op.f('pk_credit_partner_usage'))
    )
    op.create_table('credit_programme_partners',
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('share', sa.Integer(), nullable=False),
    sa.CheckConstraint('share > 0 AND share <= 10000', name=op.f('ck_credit_programme_partners_share_range')),
    sa.ForeignKeyConstraint(['partner_id'], ['credit_partners.id'], name=op.f('fk_credit_programme_partners_partner_id_credit_partners')),
    sa.ForeignKeyConstraint(['programme_id'], ['credit_programmes.id'], name=op.f('fk_credit_programme_partners_programme_id_credit_programmes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('programme_id', 'partner_id', name=op.f('pk_credit_programme_partners'))
    )
    op.create_table('credit_transfers',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('debit_account_id', sa.Integer(), nullable=False),
    sa.Column('credit_account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('pending_id', sa.String(length=100), nullable=True),
    sa.Column('timeout_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('code', sa.String(length=20), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=True),
    sa.Column('request_id', sa.String(length=100), nullable=True),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('split', sa.JSON(), nullable=True),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_credit_transfers_amount_non_negative')),
    sa.ForeignKeyConstraint(['credit_account_id'], ['credit_accounts.id'], name=op.f('fk_credit_transfers_credit_account_id_credit_accounts')),
    sa.ForeignKeyConstraint(['debit_account_id'], ['credit_accounts.id'], name=op.f('fk_credit_transfers_debit_account_id_credit_accounts')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_credit_transfers')),
    sa.UniqueConstraint('id', name=op.f('uq_credit_transfers_id')),
    sa.UniqueConstraint('pending_id', name=op.f('uq_credit_transfers_pending_id'))
    )
    op.create_index(op.f('ix_credit_transfers_credit_account_id'), 'credit_transfers', ['credit_account_id'], unique=False)
    op.create_index(op.f('ix_credit_transfers_debit_account_id'), 'credit_transfers', ['debit_account_id'], unique=False)
    op.create_index('ix_credit_transfers_org_ts', 'credit_transfers', ['org_id', 'ts'], unique=False)
    op.create_index(op.f('ix_credit_transfers_request_id'), 'credit_transfers', ['request_id'], unique=False)


def downgrade() -> None:
    op.drop_table("credit_partner_usage")
    op.drop_table("credit_transfers")
    op.drop_table("credit_programme_partners")
    op.drop_table("credit_grants")
    op.drop_table("credit_applications")
    op.drop_table("credit_programmes")
    op.drop_table("credit_prices")
    op.drop_table("credit_partners")
    op.drop_table("credit_journal_cursor")
    op.drop_table("credit_accounts")
