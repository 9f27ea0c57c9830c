"""memories: what agents learned about a repository, reviewed by people and given to later runs

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("repo", sa.Text, nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pinned", sa.Integer, nullable=False, server_default="0"),
        sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reviewed_by", sa.String(200)),
        sa.Column("reviewed_at", sa.Float),
        sa.UniqueConstraint("run_id", "call_id"),
    )


def downgrade() -> None:
    op.drop_table("memories")
