"""staff action keys

Revision ID: b2d4f6a8c0e2
Revises: a1c3e5f7b9d1
Create Date: 2026-11-25 13:20:00

"""
from alembic import op
import sqlalchemy as sa
import diary.models  # noqa: F401  (custom column types such as UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'b2d4f6a8c0e2'
down_revision = 'a1c3e5f7b9d1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('action_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=300), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('created_at', diary.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participant.id'], name=op.f('fk_action_key_participant_id_participant')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_key')),
    sa.UniqueConstraint('key', name=op.f('uq_action_key_key'))
    )


def downgrade():
    op.drop_table('action_key')
