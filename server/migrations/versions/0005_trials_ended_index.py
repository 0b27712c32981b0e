"""Index trials by (study, end time): views that follow a study (ListStudyChanges) read
the trials that ended since a time, and a study's last activity is its latest end, on
every GetStudy; with the index both are a range of it instead of a pass over the study.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trials_study_ended", "trials", ["study_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_trials_study_ended", table_name="trials")
