"""A trial's final measurement keeps its step and elapsed seconds, and a trial added with
a client-chosen request id remembers it (AddTrial is then safe to retry).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Plain ALTER TABLE (SQLite >= 3.35 drops columns too): a batch operation would recreate
# `trials` on SQLite, and dropping the old table cascades to every measurement.


def upgrade() -> None:
    op.add_column("trials", sa.Column("final_step", sa.BigInteger, nullable=True))
    op.add_column("trials", sa.Column("final_elapsed_seconds", sa.Float, nullable=True))
    op.add_column("trials", sa.Column("request_id", sa.String(128), nullable=True))
    # Unique per study; rows without a request id (NULL) never clash.
    op.create_index("ix_trials_study_request", "trials", ["study_id", "request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_trials_study_request", table_name="trials")
    for column in ("request_id", "final_elapsed_seconds", "final_step"):
        op.execute(f"ALTER TABLE trials DROP COLUMN {column}")
