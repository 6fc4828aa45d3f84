"""figures generations: a new count is written beside the old one in short transactions

Revision ID: c3e5a7b9d1f4
Revises: a1c3e5f7b9d2
Create Date: 2026-12-07 01:40:00

The figures tables hold derived data (the scheduler counts them again each minute): the
participants' table is rebuilt with its new primary key rather than converted.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d1f4'
down_revision = 'a1c3e5f7b9d2'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM figures_snapshot")  # the next count writes generation 1 onwards
    with op.batch_alter_table('figures_snapshot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('figures_participant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_figures_participant_study_id'))
    op.drop_table('figures_participant')
    op.create_table('figures_participant',
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.BigInteger(), autoincrement=False, nullable=False),
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
    sa.PrimaryKeyConstraint('participant_id', 'generation', name=op.f('pk_figures_participant'))
    )
    with op.batch_alter_table('figures_participant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_figures_participant_study_id'), ['study_id'], unique=False)
    for table in ('figures_timepoint', 'figures_vas'):
        op.execute(f"DELETE FROM {table}")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('generation', sa.BigInteger(), server_default='0', nullable=False))
            batch_op.create_index(batch_op.f(f'ix_{table}_generation'), ['generation'], unique=False)


def downgrade():
    for table in ('figures_vas', 'figures_timepoint'):
        op.execute(f"DELETE FROM {table}")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_generation'))
            batch_op.drop_column('generation')
    op.execute("DELETE FROM figures_participant")
    with op.batch_alter_table('figures_participant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_figures_participant_study_id'))
    op.drop_table('figures_participant')
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
    op.execute("DELETE FROM figures_snapshot")
    with op.batch_alter_table('figures_snapshot', schema=None) as batch_op:
        batch_op.drop_column('generation')
