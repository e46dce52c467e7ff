"""schedules

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:10:00

Schedules (jobs/schedules.py) and the schedule a job was created by (jobs.schedule), indexed in
the listings' order like every other filter.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'schedules',
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('function', sa.String(length=255), nullable=False),
        sa.Column('arguments', sa.JSON(), nullable=False),
        sa.Column('context', sa.String(length=255), nullable=True),
        sa.Column('cron', sa.String(length=255), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('missed', sa.String(length=8), nullable=False),
        sa.Column('overlap', sa.String(length=8), nullable=False),
        sa.Column('saved_by', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.BigInteger(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('next_tick_ms', sa.BigInteger(), nullable=True),
        sa.Column('held_tick_ms', sa.BigInteger(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_ms', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_schedules')),
    )
    op.create_index(op.f('ix_schedules_next_tick_ms'), 'schedules', ['next_tick_ms'],
                    unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_schedule_create_time_id'),
                              ['schedule', 'create_time', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_schedule_create_time_id'))
        batch_op.drop_column('schedule')
    op.drop_index(op.f('ix_schedules_next_tick_ms'), table_name='schedules')
    op.drop_table('schedules')
