"""per-artifact environments

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:30:00

An artifact's Python requirements and the environment they make (jobs/environments.py), each
environment's requirements by id, and the environment a job runs in.
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'environments',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('requirements', sa.Text(), nullable=False),
        sa.Column('python', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_environments')),
    )
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requirements', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('environment', sa.String(length=16), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environment', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('environment')
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_column('environment')
        batch_op.drop_column('requirements')
    op.drop_table('environments')
