"""study figures: the adherence and summary figures the scheduler counts each minute

Revision ID: b8d0f2a4c6e8
Revises: a7c9e1b3d5f7
Create Date: 2026-11-30 04:00:00

"""
from alembic import op
import sqlalchemy as sa
import diary.models  # noqa: F401  (custom column types such as UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'b8d0f2a4c6e8'
down_revision = 'a7c9e1b3d5f7'
branch_labels = None
depends_on = None

UTC = diary.models.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('figures_snapshot',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('as_of', UTC, nullable=False),
    sa.Column('took_ms', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_figures_snapshot_study_id_study')),
    sa.PrimaryKeyConstraint('study_id', name=op.f('pk_figures_snapshot'))
    )
    op.create_table('figures_participant',
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('scheduled', sa.Integer(), nullable=False),
    sa.Column('completed', sa.Integer(), nullable=False),
    sa.Column('completed_late', sa.Integer(), nullable=False),
    sa.Column('missed', sa.Integer(), nullable=False),
    sa.Column('compliance_pct', sa.Float(), nullable=True),
    sa.Column('missed_required', sa.Integer(), nullable=False),
    sa.Column('overdue', sa.Integer(), nullable=False),
    sa.Column('flagged', sa.Integer(), nullable=False),
    sa.Column('unacknowledged', sa.Integer(), nullable=False),
    sa.Column('states', sa.Integer(), nullable=False),
    sa.Column('needs_attention', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participant.id'], name=op.f('fk_figures_participant_participant_id_participant')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_figures_participant_study_id_study')),
    sa.PrimaryKeyConstraint('participant_id', name=op.f('pk_figures_participant'))
    )
    with op.batch_alter_table('figures_participant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_figures_participant_study_id'), ['study_id'], unique=False)
    op.create_table('figures_timepoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('site', sa.String(length=80), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('timepoint', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('optional', sa.Boolean(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_figures_timepoint_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_figures_timepoint'))
    )
    with op.batch_alter_table('figures_timepoint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_figures_timepoint_study_id'), ['study_id'], unique=False)
    op.create_table('figures_vas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.String(length=16), nullable=False),
    sa.Column('treatment', sa.String(length=8), nullable=False),
    sa.Column('period', sa.Integer(), nullable=False),
    sa.Column('timepoint', sa.String(length=16), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('squares', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_figures_vas_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_figures_vas'))
    )
    with op.batch_alter_table('figures_vas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_figures_vas_study_id'), ['study_id'], unique=False)


def downgrade():
    with op.batch_alter_table('figures_vas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_figures_vas_study_id'))
    op.drop_table('figures_vas')
    with op.batch_alter_table('figures_timepoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_figures_timepoint_study_id'))
    op.drop_table('figures_timepoint')
    with op.batch_alter_table('figures_participant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_figures_participant_study_id'))
    op.drop_table('figures_participant')
    op.drop_table('figures_snapshot')
