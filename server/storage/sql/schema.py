"""The database schema (SQLAlchemy Core). Alembic migrations create and evolve it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

studies = Table(
    "studies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("spec_json", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    # Counter of per-study trial ids; bumped under the study's lock.
    Column("next_trial_id", Integer, nullable=False, server_default="1"),
)

trials = Table(
    "trials",
    metadata,
    Column("study_id", Integer, primary_key=True),
    Column("trial_id", Integer, primary_key=True),
    Column("params_json", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("worker_id", String(256), nullable=False, server_default=""),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("retry_of", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=False, server_default="0"),
    Column("ended_at", Float, nullable=False, server_default="0"),
    Column("lease_expires", Float, nullable=False, server_default="0"),
    Column("final_metrics_json", Text, nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("stop_step", BigInteger, nullable=True),
    Column("stop_rule", String(32), nullable=False, server_default=""),
    Column("stop_reason", Text, nullable=False, server_default=""),
    # The final measurement's step and elapsed seconds (NULL: not given).
    Column("final_step", BigInteger, nullable=True),
    Column("final_elapsed_seconds", Float, nullable=True),
    # AddTrial's client-chosen request id, which makes it safe to retry (NULL: none).
    Column("request_id", String(128), nullable=True),
    ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
    Index("ix_trials_study_state_id", "study_id", "state", "trial_id"),
    Index("ix_trials_study_worker", "study_id", "worker_id"),
    Index("ix_trials_study_request", "study_id", "request_id", unique=True),
    # What views following a study read: the trials that ended since a time.
    Index("ix_trials_study_ended", "study_id", "ended_at"),
)

measurements = Table(
    "measurements",
    metadata,
    Column("study_id", Integer, primary_key=True),
    Column("trial_id", Integer, primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("metrics_json", Text, nullable=False),
    Column("elapsed_seconds", Float, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    # The study's primary metric in this report (NULL when the report lacks it), also kept
    # out of the JSON so early stopping can reduce the study's curves in SQL.
    Column("value", Float, nullable=True),
    ForeignKeyConstraint(
        ["study_id", "trial_id"], ["trials.study_id", "trials.trial_id"], ondelete="CASCADE"
    ),
)
