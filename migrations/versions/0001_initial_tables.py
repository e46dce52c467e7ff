"""initial tables

Revision ID: 0001
Revises:
Create Date: 2026-11-25 11:48:21.672277

The jobs indexes serve listing newest-first, whole or filtered by status, function, context or
worker, which must stay fast with millions of jobs.
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('artifact_blobs',
    sa.Column('sha1', sa.String(length=40), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('sha1', name=op.f('pk_artifact_blobs'))
    )
    op.create_table('contexts',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('spark_conf', sa.JSON(), nullable=False),
    sa.Column('max_jobs', sa.Integer(), nullable=False),
    sa.Column('worker_mode', sa.String(length=16), nullable=False),
    sa.Column('precreated', sa.Boolean(), nullable=False),
    sa.Column('downtime_s', sa.BigInteger(), nullable=True),
    sa.Column('max_conn_failures', sa.Integer(), nullable=False),
    sa.Column('run_options', sa.Text(), nullable=False),
    sa.Column('streaming_duration_s', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_contexts'))
    )
    op.create_table('functions',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('class_name', sa.String(length=255), nullable=False),
    sa.Column('default_context', sa.String(length=255), nullable=False),
    sa.Column('lang', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.JSON(), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_functions'))
    )
    op.create_table('job_logs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('ts_ms', sa.BigInteger(), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_logs'))
    )
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_logs_job_id_id'), ['job_id', 'id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('function', sa.String(length=255), nullable=False),
    sa.Column('context', sa.String(length=255), nullable=False),
    sa.Column('arguments', sa.JSON(), nullable=False),
    sa.Column('file_path', sa.String(length=255), nullable=False),
    sa.Column('class_name', sa.String(length=255), nullable=False),
    sa.Column('artifact_sha1', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('create_time', sa.BigInteger(), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=True),
    sa.Column('end_time', sa.BigInteger(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker_id', sa.String(length=255), nullable=True),
    sa.Column('start_timeout_ms', sa.BigInteger(), nullable=True),
    sa.Column('perform_timeout_ms', sa.BigInteger(), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_context_create_time'), ['context', 'create_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_create_time'), ['create_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_external_id'), ['external_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_function_create_time'), ['function', 'create_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_status_create_time'), ['status', 'create_time'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_worker_id_create_time'), ['worker_id', 'create_time'], unique=False)

    op.create_table('artifacts',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('sha1', sa.String(length=40), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['sha1'], ['artifact_blobs.sha1'], name=op.f('fk_artifacts_sha1')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_artifacts'))
    )


def downgrade() -> None:
    op.drop_table('artifacts')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_worker_id_create_time'))
        batch_op.drop_index(batch_op.f('ix_jobs_status_create_time'))
        batch_op.drop_index(batch_op.f('ix_jobs_function_create_time'))
        batch_op.drop_index(batch_op.f('ix_jobs_external_id'))
        batch_op.drop_index(batch_op.f('ix_jobs_create_time'))
        batch_op.drop_index(batch_op.f('ix_jobs_context_create_time'))

    op.drop_table('jobs')
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_logs_job_id_id'))

    op.drop_table('job_logs')
    op.drop_table('functions')
    op.drop_table('contexts')
    op.drop_table('artifact_blobs')
