"""a site's archive and its custody; the participant's wish to be told their treatment order

Revision ID: b3d5f7a9c1e4
Revises: a9c1e3f5b7d2
Create Date: 2026-12-06 19:00:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'b3d5f7a9c1e4'
down_revision = 'a9c1e3f5b7d2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('site_archive',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=80), nullable=False),
    sa.Column('as_of', UTC, nullable=False),
    sa.Column('archive_sha256', sa.String(length=64), nullable=False),
    sa.Column('zip_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=False),
    sa.Column('built_by_id', sa.Integer(), nullable=False),
    sa.Column('built_at', UTC, nullable=False),
    sa.Column('downloaded_at', UTC, nullable=True),
    sa.Column('received_by_id', sa.Integer(), nullable=True),
    sa.Column('received_at', UTC, nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['built_by_id'], ['staff_user.id'], ),
    sa.ForeignKeyConstraint(['received_by_id'], ['staff_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('participant') as batch_op:
        batch_op.add_column(sa.Column('told_treatment_order', sa.Boolean(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('participant') as batch_op:
        batch_op.drop_column('told_treatment_order')
    op.drop_table('site_archive')
