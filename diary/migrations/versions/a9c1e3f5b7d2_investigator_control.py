"""the investigator's control of the data: change requests, sign-off, the study lock, two ways
to stop, audit-trail reviews

Revision ID: a9c1e3f5b7d2
Revises: f7b9d1e3a5c7
Create Date: 2026-12-06 16:00:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'a9c1e3f5b7d2'
down_revision = 'f7b9d1e3a5c7'
branch_labels = None
depends_on = None

ROLES = "'admin', 'coordinator', 'analyst', 'unblinded', 'emergency'"
REASONS = ("'participant_decision', 'adverse_event', 'lost_to_follow_up', 'investigator_decision', "
           "'protocol_deviation', 'other'")
DECIDED_BY = "'participant', 'investigator', 'sponsor'"


def upgrade():
    op.create_table('change_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('instrument', sa.String(length=64), nullable=False),
    sa.Column('item', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('source_at', UTC, nullable=False),
    sa.Column('current_value', sa.Text(), nullable=True),
    sa.Column('proposed_value', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', UTC, nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', UTC, nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('entered_in_error', 'wrong_timepoint', 'duplicate', 'wrong_participant', 'other')",
                       name=op.f('ck_change_request_kind')),
    sa.CheckConstraint("state IN ('open', 'approved', 'rejected')", name=op.f('ck_change_request_state')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['staff_user.id'], name=op.f('fk_change_request_decided_by_id_staff_user')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['staff_user.id'], name=op.f('fk_change_request_requested_by_id_staff_user')),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], name=op.f('fk_change_request_submission_id_submission')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_request'))
    )
    with op.batch_alter_table('change_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_request_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_change_request_submission_id'), ['submission_id'], unique=False)

    op.create_table('signature',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('meaning', sa.Text(), nullable=False),
    sa.Column('values_sha256', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('signed_by_id', sa.Integer(), nullable=False),
    sa.Column('signed_at', UTC, nullable=False),
    sa.CheckConstraint("kind IN ('signed', 'waived')", name=op.f('ck_signature_kind')),
    sa.ForeignKeyConstraint(['period_id'], ['period.id'], name=op.f('fk_signature_period_id_period')),
    sa.ForeignKeyConstraint(['signed_by_id'], ['staff_user.id'], name=op.f('fk_signature_signed_by_id_staff_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signature'))
    )
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signature_period_id'), ['period_id'], unique=False)

    op.create_table('audit_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('check', sa.String(length=64), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=False),
    sa.Column('reviewed_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['staff_user.id'], name=op.f('fk_audit_review_reviewed_by_id_staff_user')),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], name=op.f('fk_audit_review_study_id_study')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_review'))
    )

    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locked_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('locked_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('lock_reason', sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_study_locked_by_id_staff_user'), 'staff_user', ['locked_by_id'], ['id'])

    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('discontinued_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('discontinuation_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('discontinuation_decided_by', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('withdrawal_decided_by', sa.String(length=16), nullable=True))
        batch_op.drop_constraint(op.f('ck_participant_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_participant_status'), "status IN ('active', 'discontinued', 'withdrawn')")
        batch_op.create_check_constraint(op.f('ck_participant_discontinuation_reason'),
                                         f"discontinuation_reason IS NULL OR discontinuation_reason IN ({REASONS})")
        batch_op.create_check_constraint(op.f('ck_participant_discontinuation_decided_by'),
                                         f"discontinuation_decided_by IS NULL OR discontinuation_decided_by IN ({DECIDED_BY})")
        batch_op.create_check_constraint(op.f('ck_participant_withdrawal_decided_by'),
                                         f"withdrawal_decided_by IS NULL OR withdrawal_decided_by IN ({DECIDED_BY})")

    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site', sa.String(length=80), nullable=True))
        batch_op.drop_constraint(op.f('ck_staff_user_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_staff_user_role'), f"role IN ({ROLES}, 'investigator')")

    with op.batch_alter_table('item_value', schema=None) as batch_op:
        batch_op.add_column(sa.Column('original_value', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('changed_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('change_request_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_item_value_change_request_id_change_request'), 'change_request',
                                    ['change_request_id'], ['id'])


def downgrade():
    with op.batch_alter_table('item_value', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_item_value_change_request_id_change_request'), type_='foreignkey')
        batch_op.drop_column('change_request_id')
        batch_op.drop_column('changed_at')
        batch_op.drop_column('original_value')
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_staff_user_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_staff_user_role'), f"role IN ({ROLES})")
        batch_op.drop_column('site')
    with op.batch_alter_table('participant', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_participant_withdrawal_decided_by'), type_='check')
        batch_op.drop_constraint(op.f('ck_participant_discontinuation_decided_by'), type_='check')
        batch_op.drop_constraint(op.f('ck_participant_discontinuation_reason'), type_='check')
        batch_op.drop_constraint(op.f('ck_participant_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_participant_status'), "status IN ('active', 'withdrawn')")
        batch_op.drop_column('withdrawal_decided_by')
        batch_op.drop_column('discontinuation_decided_by')
        batch_op.drop_column('discontinuation_reason')
        batch_op.drop_column('discontinued_at')
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_study_locked_by_id_staff_user'), type_='foreignkey')
        batch_op.drop_column('lock_reason')
        batch_op.drop_column('locked_by_id')
        batch_op.drop_column('locked_at')
    op.drop_table('audit_review')
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signature_period_id'))
    op.drop_table('signature')
    with op.batch_alter_table('change_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_request_submission_id'))
        batch_op.drop_index(batch_op.f('ix_change_request_state'))
    op.drop_table('change_request')
