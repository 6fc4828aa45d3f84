"""demographics collected at enrolment for SDTM DM: sex (CDISC codes) and year of birth

Revision ID: c5e7a9b1d3f6
Revises: b3d5f7a9c1e4
Create Date: 2026-12-06 19:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5e7a9b1d3f6'
down_revision = 'b3d5f7a9c1e4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant') as batch_op:
        batch_op.add_column(sa.Column('sex', sa.String(length=1), server_default='U', nullable=False))
        batch_op.add_column(sa.Column('birth_year', sa.Integer(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_participant_sex'), "sex IN ('F', 'M', 'U')")


def downgrade():
    with op.batch_alter_table('participant') as batch_op:
        batch_op.drop_constraint(op.f('ck_participant_sex'), type_='check')
        batch_op.drop_column('birth_year')
        batch_op.drop_column('sex')
