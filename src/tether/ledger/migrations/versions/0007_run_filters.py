"""indexes for the runs page: each filter with newest-first paging, and its choices read from the index

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FILTERS = ("status", "repo", "model", "architecture", "source")


def upgrade() -> None:
    for column in FILTERS:
        op.create_index(f"ix_runs_{column}_created_at", "runs", [column, "created_at"])


def downgrade() -> None:
    for column in FILTERS:
        op.drop_index(f"ix_runs_{column}_created_at", "runs")
