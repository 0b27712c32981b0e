"""The SQL storage: connections, indexes, SQL reductions and counts against a reference,
migrations, and snapshot reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
import re
import sqlite3
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text

from tests.conftest import PG_ADMIN_URL
from tests.server.helpers import BlockingService
from tunewire.server.domain.early_stopping import PeerQuery, peer_value
from tunewire.server.domain.study import Measurement, StudySpec, TrialState
from tunewire.server.storage.base import StudyStore
from tunewire.server.storage.sql import SqlStorage
from tunewire.server.storage.sql.engine import MIGRATIONS_DIR
from tunewire.server.storage.sql.repository import SqlStudyStore
from tunewire.server.storage.sql.schema import measurements


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


def _spec(
    metrics: tuple[tuple[str, str], ...] = (("loss", "minimize"),), **extra: object
) -> StudySpec:
    """A random-search study over one float, with these (name, goal) metrics."""
    return StudySpec.from_dict(
        {
            "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
            "metrics": [{"name": name, "goal": goal} for name, goal in metrics],
            "algorithm": "random",
            **extra,
        }
    )


@pytest.mark.parametrize("kept", [False, True], ids=["pooled", "kept"])
def test_calls_survive_postgres_dropping_every_connection(pg_database: str, kept: bool) -> None:
    """Also for a thread that keeps its connection (as the server's RPC threads do)."""
    storage = SqlStorage(pg_database)
    service = BlockingService(storage)
    trials = service.service.trials  # called on this thread, which may keep a connection
    if kept:
        storage.keep_connection_on_this_thread()
    try:
        service.create_study("reconnect", _spec())
        trial = service.suggest_trials("reconnect", 1, "w").trials[0]
        trials.report("reconnect", trial.id, "w", Measurement(0, {"loss": 1.0}))
        before = storage.run(lambda repo: repo.conn)
        assert _drop_connections(pg_database) >= 1
        # The first statement of the next call meets a dead connection; the call is
        # retried on a new one, and the pooled dead ones are not handed out again.
        decision, _ = trials.report("reconnect", trial.id, "w", Measurement(1, {"loss": 0.5}))
        assert decision is None
        assert [m.step for m in trials.get("reconnect", trial.id).measurements] == [0, 1]
        if kept:  # the dead kept connection was replaced
            assert storage.run(lambda repo: repo.conn) is not before
    finally:
        service.close()


def test_a_thread_that_keeps_a_connection_reuses_it(tmp_path: Path) -> None:
    """The server's event loop keeps one SQLite connection for its write transactions;
    what it commits is seen by every other connection, other threads and read-only
    transactions still use the pool, a broken connection is replaced, dispose closes it."""
    storage = SqlStorage(f"sqlite:///{tmp_path / 'kept.db'}")
    service = BlockingService(storage)
    try:
        storage.keep_connection_on_this_thread()
        service.create_study("kept", _spec())
        conns = [storage.run(lambda repo: repo.conn) for _ in range(3)]
        assert conns[0] is conns[1] is conns[2]
        assert storage.run(lambda repo: repo.conn, read_only=True) is not conns[0]
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(storage.run, lambda repo: repo.conn).result() is not conns[0]
            trial = service.suggest_trials("kept", 1, "w").trials[0]
            seen = pool.submit(service.get_trial, "kept", trial.id).result()
            assert seen.state is TrialState.ACTIVE and seen.worker_id == "w"

        conns[0].invalidate()  # as a lost connection is
        fresh = storage.run(lambda repo: repo.conn)
        assert fresh is not conns[0] and not fresh.invalidated
        service.report("kept", trial.id, "w", Measurement(0, {"loss": 1.0}))
    finally:
        service.close()
    assert fresh.closed
    again = BlockingService(SqlStorage(f"sqlite:///{tmp_path / 'kept.db'}"))
    try:
        assert [m.step for m in again.get_trial("kept", trial.id).measurements] == [0]
    finally:
        again.close()


def test_queries_by_trial_state_use_the_state_index(tmp_path: Path) -> None:
    """A suggestion's lookups of a worker's held trials and of enqueued trials must not
    scan the whole study: SQLite once preferred the primary key for their ORDER BY and
    read every trial of the study on each suggestion."""
    db = tmp_path / "plans.db"
    storage = SqlStorage(f"sqlite:///{db}")
    statements: list[str] = []

    @event.listens_for(storage.engine, "connect")
    def _trace(dbapi_conn: sqlite3.Connection, _: object) -> None:
        dbapi_conn.set_trace_callback(statements.append)

    storage.engine.dispose()  # new connections, traced
    service = BlockingService(storage)
    try:
        service.create_study("plans", _spec(max_concurrent_trials=8))
        for i in range(30):
            trial = service.suggest_trials("plans", 1, f"w{i % 3}").trials[0]
            service.report("plans", trial.id, f"w{i % 3}", Measurement(0, {"loss": 1.0}))
            service.complete_trial("plans", trial.id, f"w{i % 3}", Measurement(0, {"loss": 1.0}))
    finally:
        service.close()
    by_state = {s for s in statements if re.search(r"FROM trials\s+WHERE.*\.state = '", s, re.S)}
    assert by_state, "no query by trial state was traced"
    con = sqlite3.connect(db)
    try:
        for sql in by_state:
            plan = " | ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql))
            assert "ix_trials_study_state_id (study_id=? AND state=?" in plan, (sql, plan)
    finally:
        con.close()


def test_peer_values_computed_in_sql_match_the_rules_reference(storage_url: str) -> None:
    """Early stopping's per-peer numbers, and their count and median, come from SQL; they
    must equal what the rules' reference (`peer_value` over whole curves) gives, on both
    backends: irregular steps, reports without the metric, a metric name with a dot, peers
    in every state, odd and even counts, and reports written without the `value` column
    (by a replica on code from before it, during a rolling upgrade)."""
    rng = random.Random(7)
    storage = SqlStorage(storage_url)
    service = BlockingService(storage)
    metric = "val.loss"
    try:
        service.create_study("peers", _spec(((metric, "minimize"), ("acc", "maximize"))))
        for i in range(24):
            worker = f"w{i}"
            trial = service.suggest_trials("peers", 1, worker).trials[0]
            steps = sorted(rng.sample(range(12), rng.randint(0, 8)))
            for step in steps:
                metrics = {"acc": rng.random()}
                if rng.random() < 0.8:
                    metrics[metric] = rng.uniform(-2.0, 3.0)
                service.report("peers", trial.id, worker, Measurement(step, metrics))
            fate = i % 4
            if fate == 0:
                service.fail_trial("peers", trial.id, worker, "boom")
            elif fate in (1, 2):
                service.complete_trial(
                    "peers", trial.id, worker, Measurement(0, {metric: 0.0, "acc": 0.5})
                )
            # fate 3: still running

        def check(store: StudyStore) -> int:
            study = service.access.study(store, "peers")
            completed = {t.id for t in store.trials(study, states=(TrialState.COMPLETED,))}
            every = [t.id for t in store.trials(study)]
            curves = {
                tid: [(m.step, m.metrics[metric]) for m in ms if metric in m.metrics]
                for tid, ms in store.measurements(study, every).items()
            }
            checked = 0
            for reduce, step, completed_only, exclude in itertools.product(
                ("last", "mean", "first"), (0, 3, 7, 11, 20), (True, False), (1, 2)
            ):
                query = PeerQuery(completed_only, reduce, step)
                want = sorted(
                    v
                    for tid, curve in curves.items()
                    if tid != exclude and (tid in completed or not completed_only)
                    if (v := peer_value(query, curve)) is not None
                )
                got = sorted(store.peer_values(study, query, metric=metric, exclude=exclude))
                assert got == pytest.approx(want, rel=1e-12, abs=1e-12), query
                count, median = store.peer_median(study, query, metric=metric, exclude=exclude)
                assert count == len(want), query
                if want:
                    assert median == pytest.approx(statistics.median(want), rel=1e-12), query
                else:
                    assert median is None
                checked += bool(want)
            return checked

        assert storage.run(check) > 40  # most queries found peers

        def forget_values(store: StudyStore) -> int:
            """Every other report as an older replica writes it: no `value`."""
            assert isinstance(store, SqlStudyStore)
            done = store.conn.execute(
                measurements.update().where(measurements.c.step % 2 == 1).values(value=None)
            )
            return int(done.rowcount)

        assert storage.run(forget_values) > 20
        assert storage.run(check) > 40
    finally:
        service.close()


def _migrate(storage: SqlStorage, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with storage.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
        conn.commit()


def test_migration_0003_fills_in_the_primary_metric_of_existing_reports(
    storage_url: str,
) -> None:
    storage = SqlStorage(storage_url)
    service = BlockingService(storage)
    try:
        service.create_study("old", _spec((("val.loss", "minimize"), ("acc", "maximize"))))
        trial = service.suggest_trials("old", 1, "w").trials[0]
        service.report("old", trial.id, "w", Measurement(0, {"val.loss": 0.25, "acc": 0.5}))
        service.report("old", trial.id, "w", Measurement(1, {"acc": 0.75}))
        _migrate(storage, "0002", down=True)  # the column goes; the reports stay
        _migrate(storage, "head")
        with storage.engine.connect() as conn:
            values = conn.execute(text("SELECT step, value FROM measurements ORDER BY step"))
            assert [tuple(r) for r in values] == [(0, 0.25), (1, None)]
    finally:
        _migrate(storage, "head")
        service.close()


def test_sqlite_reads_neither_wait_for_nor_hold_up_writes(tmp_path: Path) -> None:
    """A listing of a large study reads a snapshot: while one is in progress, reports
    go through (they used to queue behind the reader's write lock)."""
    storage = SqlStorage(f"sqlite:///{tmp_path / 'reads.db'}")
    service = BlockingService(storage)
    reading, release = threading.Event(), threading.Event()
    try:
        service.create_study("reads", _spec())
        trial = service.suggest_trials("reads", 1, "w").trials[0]

        def slow_listing(store: StudyStore) -> int:
            study = store.find_study("reads")
            assert study is not None
            n = len(store.trials(study))
            reading.set()
            assert release.wait(10)
            return n

        pool = ThreadPoolExecutor(2)
        try:
            listing = pool.submit(storage.run, slow_listing, read_only=True)
            assert reading.wait(10)
            report = pool.submit(
                service.report, "reads", trial.id, "w", Measurement(0, {"loss": 1.0})
            )
            assert report.result(timeout=5)[0] is None  # done while the listing still reads
            assert not listing.done()
            release.set()
            assert listing.result(timeout=5) == 1
        finally:
            release.set()
            pool.shutdown()
    finally:
        service.close()


def test_a_read_that_finds_an_expired_lease_expires_it(storage_url: str) -> None:
    now = [1000.0]
    service = BlockingService(SqlStorage(storage_url), clock=lambda: now[0])
    try:
        service.create_study("expiry", _spec(lease_timeout_seconds=60))
        trial = service.suggest_trials("expiry", 1, "w").trials[0]
        now[0] += 61
        study = service.get_study("expiry")  # read-only at first, then as a write
        assert study.trial_counts.get(TrialState.LOST) == 1
        assert service.get_trial("expiry", trial.id).state == TrialState.LOST
        retried = service.list_trials("expiry", [TrialState.REQUESTED], 10, 0)[0]
        assert [t.retry_of for t in retried] == [trial.id]
    finally:
        service.close()


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_best_trials_ranked_in_sql_match_a_ranking_in_python(storage_url: str, goal: str) -> None:
    """ListOptimalTrials ranks one metric in the database: the same trials, in the same
    order (ties: the older first), as sorting every finished trial's result in Python."""
    rng = random.Random(3)
    service = BlockingService(SqlStorage(storage_url))
    metric = "val.acc"
    try:
        service.create_study("rank", _spec(((metric, goal),)))
        for i in range(40):
            worker = f"w{i}"
            trial = service.suggest_trials("rank", 1, worker).trials[0]
            value = rng.choice([0.5, 0.25, rng.uniform(-1e3, 1e3), rng.uniform(0, 1e-9)])
            if i % 7 == 3:
                service.fail_trial("rank", trial.id, worker, "boom")
            elif i % 5 == 4:
                service.complete_trial("rank", trial.id, worker, None, "out of memory")
            else:
                service.complete_trial("rank", trial.id, worker, Measurement(0, {metric: value}))
        service.add_trial("rank", {"x": 0.5}, Measurement(0, {metric: 0.5}))  # a tie, added by hand
        finished = [
            t
            for t in service.list_trials("rank", [], 100, 0)[0]
            if t.state in (TrialState.COMPLETED, TrialState.STOPPED_EARLY) and t.final_metrics
        ]
        sign = 1.0 if goal == "minimize" else -1.0
        ranked = sorted(finished, key=lambda t: (sign * t.final_metrics[metric], t.id))
        want = [t.id for t in ranked]
        for count in (1, 3, 100):
            assert [t.id for t in service.optimal_trials("rank", count)] == want[:count]
    finally:
        service.close()


def test_the_trial_budget_count_matches_a_count_of_the_rows(storage_url: str) -> None:
    """The tally counts trials created from the study's id counter; the budget it gives
    must equal counting the rows, through lost trials and their retries and trials added
    by hand."""
    now = [1000.0]
    storage = SqlStorage(storage_url)
    service = BlockingService(storage, clock=lambda: now[0])
    try:
        service.create_study("budget", _spec(lease_timeout_seconds=60, max_trial_retries=2))
        for i in range(6):
            service.suggest_trials("budget", 1, f"w{i}")
        now[0] += 61  # all six leases expire: six LOST, six retries REQUESTED
        service.add_trial("budget", {"x": 0.5}, None)
        service.add_trial("budget", {"x": 0.25}, Measurement(0, {"loss": 1.0}))
        for i in range(3):  # three retries handed out again
            service.suggest_trials("budget", 1, f"v{i}")

        def counts(store: StudyStore) -> tuple[int, int]:
            assert isinstance(store, SqlStudyStore)
            study = service.access.study(store, "budget")
            direct = store.conn.execute(
                text(
                    "SELECT count(*) FROM trials WHERE study_id = :sid "
                    "AND state NOT IN ('lost', 'requested')"
                ),
                {"sid": study.id},
            ).scalar_one()
            return store.tally(study).budget_used, int(direct)

        fast, direct = storage.run(counts)
        assert fast == direct == 4  # 3 retries running + 1 added with a result
    finally:
        service.close()
