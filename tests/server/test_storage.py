"""The SQL storage on its own: connections PostgreSQL drops are replaced without a ping."""

from __future__ import annotations

from sqlalchemy import create_engine, text

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
