"""webhooks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 07:30:00

Subscriptions to job events, the outbox of their deliveries and each delivery's attempts
(jobs/webhooks.py), and a job's own callbackUrl.
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhooks',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('secret', sa.String(length=255), nullable=False),
        sa.Column('function', sa.String(length=255), nullable=True),
        sa.Column('schedule', sa.String(length=255), nullable=True),
        sa.Column('created_by', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks')),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('webhook_id', sa.String(length=36), nullable=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('event', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_ms', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('delivered_at', sa.BigInteger(), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    )
    op.create_index(op.f('ix_webhook_deliveries_status_next_attempt_ms'), 'webhook_deliveries',
                    ['status', 'next_attempt_ms'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_webhook_id_created_at'), 'webhook_deliveries',
                    ['webhook_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_job_id'), 'webhook_deliveries', ['job_id'],
                    unique=False)
    op.create_table(
        'webhook_attempts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('delivery_id', sa.String(length=36), nullable=False),
        sa.Column('at_ms', sa.BigInteger(), nullable=False),
        sa.Column('latency_ms', sa.Integer(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    )
    op.create_index(op.f('ix_webhook_attempts_delivery_id_id'), 'webhook_attempts',
                    ['delivery_id', 'id'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_url', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('callback_url')
    op.drop_index(op.f('ix_webhook_attempts_delivery_id_id'), table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index(op.f('ix_webhook_deliveries_job_id'), table_name='webhook_deliveries')
    op.drop_index(op.f('ix_webhook_deliveries_webhook_id_created_at'),
                  table_name='webhook_deliveries')
    op.drop_index(op.f('ix_webhook_deliveries_status_next_attempt_ms'),
                  table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhooks')
