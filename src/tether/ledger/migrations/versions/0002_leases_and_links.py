"""who holds a live run (lease), and which run a replay replays

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(200)))
        batch.add_column(sa.Column("heartbeat_at", sa.Float))
        batch.add_column(sa.Column("parent_run_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_run_id")
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
