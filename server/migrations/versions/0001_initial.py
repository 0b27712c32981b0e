"""Initial schema: studies, trials, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_trial_id", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "trials",
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, primary_key=True),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retry_of", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("ended_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("lease_expires", sa.Float, nullable=False, server_default="0"),
        sa.Column("final_metrics_json", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("stop_step", sa.BigInteger, nullable=True),
        sa.Column("stop_rule", sa.String(32), nullable=False, server_default=""),
        sa.Column("stop_reason", sa.Text, nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_trials_study_state", "trials", ["study_id", "state"])
    op.create_index("ix_trials_study_worker", "trials", ["study_id", "worker_id"])
    op.create_table(
        "measurements",
        sa.Column("study_id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("elapsed_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id", "trial_id"],
            ["trials.study_id", "trials.trial_id"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("measurements")
    op.drop_table("trials")
    op.drop_table("studies")
