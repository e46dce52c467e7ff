"""result cache

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:30:00

A function may reuse an identical call's result for a time (functions.cache_ms, NULL: off), and
a job answered that way names the job it repeats (jobs.cached_from). See jobs/result_cache.py.
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('functions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cache_ms', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cached_from', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('cached_from')
    with op.batch_alter_table('functions', schema=None) as batch_op:
        batch_op.drop_column('cache_ms')
