"""dummy allocation for blinded exports, withdrawal reason category

Revision ID: e5a7c9e1f3b5
Revises: d4f6b8d0e2a4
Create Date: 2026-11-25 15:30:00

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'e5a7c9e1f3b5'
down_revision = 'd4f6b8d0e2a4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('withdrawal_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('dummy_sequence', sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_participant_withdrawal_reason'),
            "withdrawal_reason IS NULL OR withdrawal_reason IN ('participant_decision', 'adverse_event', "
            "'lost_to_follow_up', 'investigator_decision', 'protocol_deviation', 'other')")
    # Participants withdrawn before the category existed: their reason is in the audit trail.
    op.execute("UPDATE participant SET withdrawal_reason = 'other' WHERE status = 'withdrawn'")
    with op.batch_alter_table('randomization_slot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dummy_sequence', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('randomization_slot', schema=None) as batch_op:
        batch_op.drop_column('dummy_sequence')
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_participant_withdrawal_reason'), type_='check')
        batch_op.drop_column('dummy_sequence')
        batch_op.drop_column('withdrawal_reason')
