"""planned infusions and collection times

Revision ID: a1c3e5f7b9d1
Revises: 4db4cfddd531
Create Date: 2026-11-25 14:00:00

"""
from alembic import op
import sqlalchemy as sa
import diary.models  # noqa: F401  (custom column types such as UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'a1c3e5f7b9d1'
down_revision = '4db4cfddd531'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('period', schema=None) as batch_op:
        batch_op.add_column(sa.Column('planned_start', diary.models.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('collected_at', diary.models.UTCDateTime(timezone=True), nullable=True))
    # Entries made before collection times existed were participants' own or keyed at once:
    # their receipt time is the best record of when the answers were given.
    op.execute("UPDATE submission SET collected_at = submitted_at WHERE collected_at IS NULL")
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.alter_column('collected_at', existing_type=diary.models.UTCDateTime(timezone=True),
                              nullable=False)


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_column('collected_at')
    with op.batch_alter_table('period', schema=None) as batch_op:
        batch_op.drop_column('planned_start')
