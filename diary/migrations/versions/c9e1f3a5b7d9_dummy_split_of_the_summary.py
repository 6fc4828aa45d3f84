"""the study figures' VAS sums also by dummy sequence (blinded roles see the summary split by it)

Revision ID: c9e1f3a5b7d9
Revises: b8d0f2a4c6e8
Create Date: 2026-12-06 13:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c9e1f3a5b7d9'
down_revision = 'b8d0f2a4c6e8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('figures_vas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dummy_sequence', sa.String(length=16), nullable=True))
    # The stored figures are derived data: the scheduler's next count refills them by dummy too.
    op.execute("DELETE FROM figures_vas")
    op.execute("DELETE FROM figures_snapshot")


def downgrade():
    with op.batch_alter_table('figures_vas', schema=None) as batch_op:
        batch_op.drop_column('dummy_sequence')
