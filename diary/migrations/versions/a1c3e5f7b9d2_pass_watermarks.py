"""pass watermarks: the scheduler's steps judge what changed since their last pass

Revision ID: a1c3e5f7b9d2
Revises: e9b1d3f5a7c2
Create Date: 2026-12-07 01:50:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'a1c3e5f7b9d2'
down_revision = 'e9b1d3f5a7c2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pass_watermark',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('through', UTC, nullable=False),
    sa.Column('full_at', UTC, nullable=False),
    sa.Column('protocol_version_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    # What changed since a moment: windows whose late close passed, entries and infusions a
    # rule's delay ago.
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_assessment_late_close'), ['late_close'], unique=False)
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_collected_at'), ['collected_at'], unique=False)
    with op.batch_alter_table('period', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_period_dose_start'), ['dose_start'], unique=False)


def downgrade():
    with op.batch_alter_table('period', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_period_dose_start'))
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_collected_at'))
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assessment_late_close'))
    op.drop_table('pass_watermark')
