"""Files (encrypted chunks) and batches (leased lines); usage rows name their batch

Revision ID: 0012
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('endpoint', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('input_file_id', sa.String(length=40), nullable=False),
    sa.Column('completion_window', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('in_progress_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finalizing_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelling_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('output_file_id', sa.String(length=40), nullable=True),
    sa.Column('error_file_id', sa.String(length=40), nullable=True),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_expires_after_s', sa.Integer(), nullable=True),
    sa.Column('schedule', sa.JSON(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_batches_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_batches')),
    sa.UniqueConstraint('id', name=op.f('uq_batches_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_batches_org_seq', ['org_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_status'), ['status'], unique=False)

    op.create_table('files',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('complete', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_files_org_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_files')),
    sa.UniqueConstraint('id', name=op.f('uq_files_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_files_org_purpose', ['org_id', 'purpose'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_user_id'), ['user_id'], unique=False)

    op.create_table('batch_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_seq', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('custom_id', sa.String(length=512), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('result', sa.LargeBinary(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['batch_seq'], ['batches.seq'], name=op.f('fk_batch_lines_batch_seq_batches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_lines')),
    sa.UniqueConstraint('batch_seq', 'custom_id', name='uq_batch_lines_custom_id')
    )
    with op.batch_alter_table('batch_lines', schema=None) as batch_op:
        batch_op.create_index('ix_batch_lines_batch_line', ['batch_seq', 'line_no'], unique=False)
        batch_op.create_index('ix_batch_lines_work', ['status', 'not_before'], unique=False)

    op.create_table('file_chunks',
    sa.Column('file_seq', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['file_seq'], ['files.seq'], name=op.f('fk_file_chunks_file_seq_files'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('file_seq', 'n', name=op.f('pk_file_chunks'))
    )
    op.add_column('usage_records', sa.Column('batch_id', sa.String(length=40), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('batch_id')

    op.drop_table('file_chunks')
    with op.batch_alter_table('batch_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_batch_lines_work')
        batch_op.drop_index('ix_batch_lines_batch_line')

    op.drop_table('batch_lines')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_user_id'))
        batch_op.drop_index('ix_files_org_purpose')
        batch_op.drop_index(batch_op.f('ix_files_org_id'))
        batch_op.drop_index(batch_op.f('ix_files_expires_at'))

    op.drop_table('files')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batches_status'))
        batch_op.drop_index('ix_batches_org_seq')
        batch_op.drop_index(batch_op.f('ix_batches_org_id'))

    op.drop_table('batches')
