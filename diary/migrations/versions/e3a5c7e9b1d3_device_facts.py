"""the device each entry was answered on

Revision ID: e3a5c7e9b1d3
Revises: d1f3a5b7c9e2
Create Date: 2026-12-06 14:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e3a5c7e9b1d3'
down_revision = 'd1f3a5b7c9e2'
branch_labels = None
depends_on = None

COLUMNS = (('viewport_width', sa.Integer()), ('viewport_height', sa.Integer()), ('device_pixel_ratio', sa.Float()),
           ('zoom', sa.Float()), ('text_scale', sa.Float()), ('browser', sa.String(length=40)))


def upgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
