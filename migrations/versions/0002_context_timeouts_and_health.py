"""context timeouts and health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:45:00

Contexts get default start and perform timeouts for their jobs; context_health counts worker
failures in a row and records when a context broke.
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('start_timeout_s', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('perform_timeout_s', sa.BigInteger(), nullable=True))
    op.create_table('context_health',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure', sa.Text(), nullable=True),
    sa.Column('broken_at', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_context_health'))
    )


def downgrade() -> None:
    op.drop_table('context_health')
    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.drop_column('perform_timeout_s')
        batch_op.drop_column('start_timeout_s')
