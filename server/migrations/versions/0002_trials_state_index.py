"""Index trials by (study, state, trial id), so the queries a suggestion makes stay fast
as a study grows.

With the old (study_id, state) index SQLite preferred the primary key for
`... WHERE study_id = ? AND state = ? ORDER BY trial_id`, to skip a sort, and scanned
every trial of the study on each suggestion to find a worker's held trials and the
enqueued ones, a cost that grew with the study. The new index answers the equality and
the order together.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_trials_study_state", table_name="trials")
    op.create_index("ix_trials_study_state_id", "trials", ["study_id", "state", "trial_id"])


def downgrade() -> None:
    op.drop_index("ix_trials_study_state_id", table_name="trials")
    op.create_index("ix_trials_study_state", "trials", ["study_id", "state"])
