"""the language of each participant's diary and reminders

Revision ID: f6b8d0f2a4c6
Revises: e5a7c9e1f3b5
Create Date: 2026-11-25 16:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f6b8d0f2a4c6'
down_revision = 'e5a7c9e1f3b5'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), server_default='en', nullable=False))
        batch_op.create_check_constraint(op.f('ck_participant_language'), "language IN ('en', 'es')")


def downgrade():
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_participant_language'), type_='check')
        batch_op.drop_column('language')
