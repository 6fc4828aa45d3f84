"""safety and follow-up: staff messages, follow-up tasks, side-effect review, code breaks, opened reminders

Revision ID: d4f6b8d0e2a4
Revises: c3e5a7b9d1f3
Create Date: 2026-11-25 14:00:00

"""
from alembic import op
import sqlalchemy as sa
import diary.models  # noqa: F401  (custom column types such as UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'd4f6b8d0e2a4'
down_revision = 'c3e5a7b9d1f3'
branch_labels = None
depends_on = None

UTC = diary.models.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('staff_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('due_at', UTC, nullable=False),
    sa.Column('not_after', UTC, nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTC, nullable=True),
    sa.Column('claim_token', sa.String(length=40), nullable=True),
    sa.Column('claimed_at', UTC, nullable=True),
    sa.Column('sent_at', UTC, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.CheckConstraint("kind IN ('severe_alert', 'code_break', 'follow_up_digest')", name=op.f('ck_staff_message_kind')),
    sa.CheckConstraint("state IN ('pending', 'sending', 'sent', 'failed', 'expired', 'cancelled')", name=op.f('ck_staff_message_state')),
    sa.ForeignKeyConstraint(['participant_id'], ['participant.id'], name=op.f('fk_staff_message_participant_id_participant')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_message')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_staff_message_dedupe_key'))
    )
    with op.batch_alter_table('staff_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_message_claim_token'), ['claim_token'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_message_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_staff_message_state'), ['state'], unique=False)
    op.create_table('follow_up_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('due_at', UTC, nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('closed_at', UTC, nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("outcome IS NULL OR outcome IN ('reached', 'no_answer', 'left_message', 'withdrawn')", name=op.f('ck_follow_up_task_outcome')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['staff_user.id'], name=op.f('fk_follow_up_task_closed_by_id_staff_user')),
    sa.ForeignKeyConstraint(['participant_id'], ['participant.id'], name=op.f('fk_follow_up_task_participant_id_participant')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_up_task')),
    sa.UniqueConstraint('key', name=op.f('uq_follow_up_task_key'))
    )
    with op.batch_alter_table('follow_up_task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follow_up_task_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_follow_up_task_participant_id'), ['participant_id'], unique=False)
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_broken_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('code_broken_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_participant_code_broken_by_id_staff_user'), 'staff_user',
                                    ['code_broken_by_id'], ['id'])
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_at', UTC, nullable=True))
    with op.batch_alter_table('side_effect_report', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_state', sa.String(length=16), server_default='new', nullable=False))
        batch_op.add_column(sa.Column('review_due_at', UTC, nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_side_effect_report_review_state'),
                                         "review_state IN ('new', 'reviewed', 'ae_recorded')")
    # Reports acknowledged before reviews had states were reviewed.
    op.execute("UPDATE side_effect_report SET review_state = 'reviewed' WHERE acknowledged_at IS NOT NULL")
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_staff_user_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_staff_user_role'),
                                         "role IN ('admin', 'coordinator', 'analyst', 'unblinded', 'emergency')")


def downgrade():
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_staff_user_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_staff_user_role'), "role IN ('admin', 'coordinator', 'analyst', 'unblinded')")
    with op.batch_alter_table('side_effect_report', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_side_effect_report_review_state'), type_='check')
        batch_op.drop_column('review_due_at')
        batch_op.drop_column('review_state')
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_column('opened_at')
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_participant_code_broken_by_id_staff_user'), type_='foreignkey')
        batch_op.drop_column('code_broken_by_id')
        batch_op.drop_column('code_broken_at')
    op.drop_table('follow_up_task')
    op.drop_table('staff_message')
