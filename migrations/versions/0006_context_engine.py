"""context engine

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:40:00

A context names the engine its workers run jobs on: "spark" (a SparkSession, what every context
stored so far has) or "python" (a plain Python worker with no JVM).
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engine', sa.String(length=16), nullable=False,
                                      server_default='spark'))


def downgrade() -> None:
    with op.batch_alter_table('contexts', schema=None) as batch_op:
        batch_op.drop_column('engine')
