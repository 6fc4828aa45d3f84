"""messages no channel could carry are not_sent; tasks resolved by data; the scheduler's heartbeat

Revision ID: d1f3a5b7c9e2
Revises: c9e1f3a5b7d9
Create Date: 2026-12-06 14:00:00

"""
from alembic import op
import sqlalchemy as sa

import diary.models  # noqa: F401  (custom column types such as UTCDateTime)

UTC = diary.models.UTCDateTime(timezone=True)


# revision identifiers, used by Alembic.
revision = 'd1f3a5b7c9e2'
down_revision = 'c9e1f3a5b7d9'
branch_labels = None
depends_on = None

STATES = "'pending', 'sending', 'sent', 'failed', 'expired', 'cancelled'"
OUTCOMES = "'reached', 'no_answer', 'left_message', 'withdrawn'"


def _states(table, states):
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(op.f(f'ck_{table}_state'), type_='check')
        batch_op.create_check_constraint(op.f(f'ck_{table}_state'), f"state IN ({states})")


def upgrade():
    op.create_table('scheduler_heartbeat',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('started_at', UTC, nullable=False),
    sa.Column('last_pass_at', UTC, nullable=False),
    sa.Column('last_pass_ms', sa.Integer(), nullable=False),
    sa.Column('last_summary', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduler_heartbeat')),
    sa.UniqueConstraint('name', name=op.f('uq_scheduler_heartbeat_name'))
    )
    with op.batch_alter_table('scheduler_heartbeat', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scheduler_heartbeat_last_pass_at'), ['last_pass_at'], unique=False)
    _states('reminder', STATES + ", 'not_sent'")
    _states('staff_message', STATES + ", 'not_sent'")
    with op.batch_alter_table('follow_up_task', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_follow_up_task_outcome'), type_='check')
        batch_op.create_check_constraint(op.f('ck_follow_up_task_outcome'),
                                         f"outcome IS NULL OR outcome IN ({OUTCOMES}, 'resolved_by_data')")


def downgrade():
    with op.batch_alter_table('follow_up_task', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_follow_up_task_outcome'), type_='check')
        batch_op.create_check_constraint(op.f('ck_follow_up_task_outcome'), f"outcome IS NULL OR outcome IN ({OUTCOMES})")
    _states('staff_message', STATES)
    _states('reminder', STATES)
    with op.batch_alter_table('scheduler_heartbeat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scheduler_heartbeat_last_pass_at'))
    op.drop_table('scheduler_heartbeat')
