"""fleet-wide rows: kill switches, daily usage, repository slots, shared settings

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "switches",
        sa.Column("scope", sa.String(512), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "fleet_usage",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("scope", sa.String(512), primary_key=True),
        sa.Column("usd", sa.Float, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
    )
    op.create_table(
        "repo_slots",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
    )
    op.create_index("ix_repo_slots_repo", "repo_slots", ["repo"])
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index("ix_repo_slots_repo", "repo_slots")
    op.drop_table("repo_slots")
    op.drop_table("fleet_usage")
    op.drop_table("switches")
