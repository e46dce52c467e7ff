"""models

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 22:45:00

The model store: pickled objects that jobs save under a name (model_versions, one row per
version, its bytes in model_blobs by SHA-256) and the version of each that is live (models).
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'model_blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_model_blobs')),
    )
    op.create_table(
        'models',
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('live_sha256', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_models')),
    )
    op.create_table(
        'model_versions',
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('created_by', sa.String(length=255), nullable=False),
        sa.Column('promoted_at', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['name'], ['models.name'],
                                name=op.f('fk_model_versions_name')),
        sa.ForeignKeyConstraint(['sha256'], ['model_blobs.sha256'],
                                name=op.f('fk_model_versions_sha256')),
        sa.PrimaryKeyConstraint('name', 'sha256', name=op.f('pk_model_versions')),
    )


def downgrade() -> None:
    op.drop_table('model_versions')
    op.drop_table('models')
    op.drop_table('model_blobs')
