"""The SQL storage on its own: connections PostgreSQL drops are replaced without a ping."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, event, text

from tests.conftest import PG_ADMIN_URL
from tunewire.server.service import TuningService
from tunewire.server.storage.sql import Storage
from tunewire.server.study import Measurement, StudySpec


def _drop_connections(url: str) -> int:
    """Terminates every server connection to the database of `url` (as a restart does)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": url.rsplit("/", 1)[1]},
                ).all()
            )
    finally:
        admin.dispose()


def test_calls_survive_postgres_dropping_every_connection(pg_database: str) -> None:
    storage = Storage(pg_database)
    service = TuningService(storage)
    try:
        spec = StudySpec.from_dict(
            {
                "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
                "metrics": [{"name": "loss", "goal": "minimize"}],
                "algorithm": "random",
            }
        )
        service.create_study("reconnect", spec)
        trial = service.suggest_trials("reconnect", 1, "w").trials[0]
        service.report("reconnect", trial.id, "w", Measurement(0, {"loss": 1.0}))
        assert _drop_connections(pg_database) >= 1
        # The first statement of the next call meets a dead connection; the call is
        # retried on a new one, and the pooled dead ones are not handed out again.
        decision, _ = service.report("reconnect", trial.id, "w", Measurement(1, {"loss": 0.5}))
        assert decision is None
        assert [m.step for m in service.get_trial("reconnect", trial.id).measurements] == [0, 1]
    finally:
        storage.dispose()


def test_queries_by_trial_state_use_the_state_index(tmp_path: Path) -> None:
    """A suggestion's lookups of a worker's held trials and of enqueued trials must not
    scan the whole study: SQLite once preferred the primary key for their ORDER BY and
    read every trial of the study on each suggestion."""
    db = tmp_path / "plans.db"
    storage = Storage(f"sqlite:///{db}")
    statements: list[str] = []

    @event.listens_for(storage.engine, "connect")
    def _trace(dbapi_conn: sqlite3.Connection, _: object) -> None:
        dbapi_conn.set_trace_callback(statements.append)

    storage.engine.dispose()  # new connections, traced
    service = TuningService(storage)
    try:
        spec = StudySpec.from_dict(
            {
                "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
                "metrics": [{"name": "loss", "goal": "minimize"}],
                "algorithm": "random",
                "max_concurrent_trials": 8,
            }
        )
        service.create_study("plans", spec)
        for i in range(30):
            trial = service.suggest_trials("plans", 1, f"w{i % 3}").trials[0]
            service.report("plans", trial.id, f"w{i % 3}", Measurement(0, {"loss": 1.0}))
            service.complete_trial("plans", trial.id, f"w{i % 3}", {"loss": 1.0})
    finally:
        storage.dispose()
    by_state = {s for s in statements if re.search(r"FROM trials\s+WHERE.*\.state = '", s, re.S)}
    assert by_state, "no query by trial state was traced"
    con = sqlite3.connect(db)
    try:
        for sql in by_state:
            plan = " | ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql))
            assert "ix_trials_study_state_id (study_id=? AND state=?" in plan, (sql, plan)
    finally:
        con.close()
