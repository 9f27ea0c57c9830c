"""evals: one row per eval (its spec) and one per cell (task x config x repeat: its run and its score)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("suite", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
    )
    op.create_table(
        "eval_cells",
        sa.Column("eval_id", sa.String(64), sa.ForeignKey("evals.id"), primary_key=True),
        sa.Column("task", sa.String(200), primary_key=True),
        sa.Column("config", sa.String(200), primary_key=True),
        sa.Column("repeat", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.Float),
        sa.Column("score", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("eval_cells")
    op.drop_table("evals")
