"""protocol amendments: the proposed text, its classified changes, proposer, approver, applied version

Revision ID: e9b1d3f5a7c2
Revises: d7f9b1c3e5a8
Create Date: 2026-12-06 22:10:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'e9b1d3f5a7c2'
down_revision = 'd7f9b1c3e5a8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('protocol_amendment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('base_version_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('source_text', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('classification', sa.String(length=16), nullable=False),
    sa.Column('changes', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('proposed_by', sa.String(length=300), nullable=False),
    sa.Column('proposed_by_id', sa.Integer(), nullable=True),
    sa.Column('proposed_at', UTC, nullable=False),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_at', UTC, nullable=True),
    sa.Column('applied_version_id', sa.Integer(), nullable=True),
    sa.Column('applied_at', UTC, nullable=True),
    sa.CheckConstraint("state IN ('proposed', 'applied', 'withdrawn')", name=op.f('ck_protocol_amendment_state')),
    sa.CheckConstraint("classification IN ('additive', 'critical')", name=op.f('ck_protocol_amendment_classification')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_protocol_amendment_study_id_study')),
    sa.ForeignKeyConstraint(['base_version_id'], ['protocol_version.id'],
                            name=op.f('fk_protocol_amendment_base_version_id_protocol_version')),
    sa.ForeignKeyConstraint(['applied_version_id'], ['protocol_version.id'],
                            name=op.f('fk_protocol_amendment_applied_version_id_protocol_version')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['staff_user.id'],
                            name=op.f('fk_protocol_amendment_proposed_by_id_staff_user')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['staff_user.id'],
                            name=op.f('fk_protocol_amendment_approved_by_id_staff_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocol_amendment'))
    )
    op.create_index('ix_protocol_amendment_one_waiting', 'protocol_amendment', ['study_id'], unique=True,
                    sqlite_where=sa.text("state = 'proposed'"), postgresql_where=sa.text("state = 'proposed'"))


def downgrade():
    op.drop_index('ix_protocol_amendment_one_waiting', table_name='protocol_amendment')
    op.drop_table('protocol_amendment')
