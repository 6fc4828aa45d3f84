"""how each entry reached the server: online, offline_sync or staff

Revision ID: a7c9e1b3d5f7
Revises: f6b8d0f2a4c6
Create Date: 2026-11-25 16:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c9e1b3d5f7'
down_revision = 'f6b8d0f2a4c6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submission_mode', sa.String(length=16), server_default='online', nullable=False))
        batch_op.create_check_constraint(op.f('ck_submission_submission_mode'),
                                         "submission_mode IN ('online', 'offline_sync', 'staff')")
    # Entries made by staff before the column existed.
    op.execute("UPDATE submission SET submission_mode = 'staff' WHERE source != 'participant'")


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_submission_submission_mode'), type_='check')
        batch_op.drop_column('submission_mode')
