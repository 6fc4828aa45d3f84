"""side effects coded by the study team: the dictionary term of a verbatim report, who, when, why

Revision ID: d7f9b1c3e5a8
Revises: c5e7a9b1d3f6
Create Date: 2026-12-06 19:55:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'd7f9b1c3e5a8'
down_revision = 'c5e7a9b1d3f6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('side_effect_report') as batch_op:
        batch_op.add_column(sa.Column('coded_term', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('coded_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('coded_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('coding_reason', sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_side_effect_report_coded_by_id_staff_user'), 'staff_user',
                                    ['coded_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('side_effect_report') as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_side_effect_report_coded_by_id_staff_user'), type_='foreignkey')
        batch_op.drop_column('coding_reason')
        batch_op.drop_column('coded_at')
        batch_op.drop_column('coded_by_id')
        batch_op.drop_column('coded_term')
