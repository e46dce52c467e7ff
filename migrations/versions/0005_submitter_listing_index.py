"""submitter listing index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 19:00:00

A caller whose role sees only its own jobs (submit) lists them newest first, filtered by
submitter: (submitter, create_time, id) serves each page as a short walk down one index
however many jobs other owners have.
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_submitter_create_time_id',
                              ['submitter', 'create_time', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_submitter_create_time_id')
