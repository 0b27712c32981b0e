"""Prebuilt SQL for the calls workers make most, and the driver-level statement that runs
it: the SQL is built once rather than per call, because on SQLite every write runs while
holding the one writer lock."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from tunewire.server.domain.study import TrialState
from tunewire.server.storage.sql.schema import measurements, studies, trials


def to_json(value: Any) -> str:
    """Canonical JSON text of a stored value (sorted keys, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class DriverStatement:
    """A hot-path statement, compiled by SQLAlchemy once per dialect and executed on the
    driver's cursor within the caller's transaction.

    SQLAlchemy's per-execution bookkeeping (cache key, events, result wrapping) is large
    next to a short query on SQLite, where every write transaction holds the one writer
    lock: it would bound the whole server's throughput. Driver errors are raised
    as SQLAlchemy's exceptions, so `SqlStorage.run` retries and reports them as for any
    other statement.
    """

    def __init__(self, statement: Any, *, postgresql: Any = None) -> None:
        self._statements = {"postgresql": postgresql} if postgresql is not None else {}
        self._default = statement
        self._compiled: dict[str, tuple[str, dict[str, Any], tuple[str, ...] | None]] = {}

    def _compile(self, dialect: Any) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._statements.get(dialect.name, self._default).compile(dialect=dialect)
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            # Literal values of the statement (e.g. a state name) are bound parameters too.
            found = (compiled.string, dict(compiled.params), order)
            self._compiled[dialect.name] = found
        return found

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Runs the statement; returns the driver's cursor (rows are plain tuples)."""
        return self._run(conn, [params], many=False)

    def execute_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Runs the statement once per parameter set, as the driver's executemany (one
        pipelined batch on PostgreSQL)."""
        if params:
            self._run(conn, params, many=True)

    def _run(self, conn: Connection, params: Sequence[Mapping[str, Any]], *, many: bool) -> Any:
        sql, defaults, order = self._compile(conn.dialect)
        rows: list[Any] = []
        for p in params:
            values = {**defaults, **p}
            rows.append(tuple(values[name] for name in order) if order is not None else values)
        args: Any = rows if many else rows[0]
        driver_conn = conn.connection.dbapi_connection
        assert driver_conn is not None
        cursor = driver_conn.cursor()
        try:
            if many:
                cursor.executemany(sql, args)
            else:
                cursor.execute(sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            lost = conn.dialect.is_disconnect(exc, driver_conn, cursor)
            if lost:
                # As SQLAlchemy does on a disconnect: this connection and every other
                # pooled one (opened before the outage) are replaced.
                conn.invalidate(exc)
                conn.engine.dispose(close=False)
            raise DBAPIError.instance(
                sql,
                args,
                exc,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=conn.dialect,
            ) from exc
        return cursor


STUDY_COLUMNS = (
    studies.c.id,
    studies.c.name,
    studies.c.spec_json,
    studies.c.state,
    studies.c.created_at,
)
TRIAL_COLUMNS = tuple(trials.c.keys())
TRIAL_KEY = and_(trials.c.study_id == bindparam("sid"), trials.c.trial_id == bindparam("tid"))
_STUDY_ID = trials.c.study_id == bindparam("sid")


def _lease_expired(table: Any) -> Any:
    return and_(
        table.c.state == TrialState.ACTIVE.value,
        table.c.lease_expires < bindparam("now"),
    )


BEGIN_IMMEDIATE = DriverStatement(text("BEGIN IMMEDIATE"))
BEGIN_DEFERRED = DriverStatement(text("BEGIN"))
LOCK_STUDY = DriverStatement(text("SELECT pg_advisory_xact_lock(20517, :sid)"))

# -- the statements of every worker's calls (suggest, report, heartbeat, complete) -------------
FIND_STUDY = DriverStatement(select(*STUDY_COLUMNS).where(studies.c.name == bindparam("name")))
HAS_EXPIRED = DriverStatement(
    select(trials.c.trial_id).where(_STUDY_ID, _lease_expired(trials)).limit(1)
)
# The study, one of its trials and whether any lease of the study has expired, in one
# round trip: the calls a worker makes most (reports, heartbeats) need exactly this.
_EXPIRED_TRIALS = trials.alias("expired")
_STUDY_TRIAL = (
    select(
        *STUDY_COLUMNS,
        select(_EXPIRED_TRIALS.c.trial_id)
        .where(_EXPIRED_TRIALS.c.study_id == studies.c.id, _lease_expired(_EXPIRED_TRIALS))
        .exists()
        .label("any_expired"),
        *trials.c,
    )
    .select_from(
        studies.join(
            trials,
            and_(trials.c.study_id == studies.c.id, trials.c.trial_id == bindparam("tid")),
        )
    )
    .where(studies.c.name == bindparam("name"))
)
FIND_STUDY_TRIAL = DriverStatement(_STUDY_TRIAL)
FIND_STUDY_TRIAL_FOR_UPDATE = DriverStatement(
    _STUDY_TRIAL, postgresql=_STUDY_TRIAL.with_for_update(of=trials)
)
RENEW_LEASE = DriverStatement(
    update(trials).where(TRIAL_KEY).values(lease_expires=bindparam("lease"))
)
_MEASUREMENT_VALUES: dict[str, Any] = {
    name: bindparam(name)
    for name in (
        "study_id",
        "trial_id",
        "step",
        "metrics_json",
        "elapsed_seconds",
        "created_at",
        "value",
    )
}
# Inserts unless (trial, step) exists; RETURNING says whether it did (psycopg 3's rowcount
# is not reliable for INSERT).
INSERT_MEASUREMENT = DriverStatement(
    insert(measurements)
    .prefix_with("OR IGNORE")
    .values(_MEASUREMENT_VALUES)
    .returning(measurements.c.step),
    postgresql=pg_insert(measurements)
    .values(_MEASUREMENT_VALUES)
    .on_conflict_do_nothing()
    .returning(measurements.c.step),
)
# PostgreSQL: a report's lease renewal and its insert in one statement (one round trip).
RENEW_AND_INSERT_MEASUREMENT = DriverStatement(
    pg_insert(measurements)
    .add_cte(
        update(trials).where(TRIAL_KEY).values(lease_expires=bindparam("lease")).cte("renewed")
    )
    .values(_MEASUREMENT_VALUES)
    .on_conflict_do_nothing()
    .returning(measurements.c.step)
)
GET_MEASUREMENT = select(measurements).where(
    measurements.c.study_id == bindparam("sid"),
    measurements.c.trial_id == bindparam("tid"),
    measurements.c.step == bindparam("step"),
)

# -- a suggestion's common shapes: a worker's held trials, the queued ones, the counters ------
HELD_TRIALS = DriverStatement(
    select(trials)
    .where(
        _STUDY_ID,
        trials.c.state == bindparam("state"),
        trials.c.worker_id == bindparam("worker"),
    )
    .order_by(trials.c.trial_id)
)
TRIALS_IN_STATE = DriverStatement(
    select(trials)
    .where(_STUDY_ID, trials.c.state == bindparam("state"))
    .order_by(trials.c.trial_id)
    .limit(bindparam("limit", literal_execute=False))
)


def _count_in(state: TrialState) -> Any:
    return select(func.count()).where(_STUDY_ID, trials.c.state == state.value).scalar_subquery()


# Trials created (the study's id counter) and those LOST, REQUESTED and ACTIVE: index
# ranges, not a pass over a large study.
TALLY = DriverStatement(
    select(
        select(studies.c.next_trial_id - 1)
        .where(studies.c.id == bindparam("sid"))
        .scalar_subquery(),
        _count_in(TrialState.LOST),
        _count_in(TrialState.REQUESTED),
        _count_in(TrialState.ACTIVE),
    )
)
ALLOCATE_TRIAL_IDS = DriverStatement(
    update(studies)
    .where(studies.c.id == bindparam("sid"))
    .values(next_trial_id=studies.c.next_trial_id + bindparam("n"))
    .returning(studies.c.next_trial_id)
)

# Trial inserts and updates by the columns they set (a handful of shapes), each from the
# parameters new_<column>.
_INSERT_TRIAL: dict[tuple[str, ...], DriverStatement] = {}
_UPDATE_TRIAL: dict[tuple[str, ...], DriverStatement] = {}


def _by_columns(
    cache: dict[tuple[str, ...], DriverStatement],
    columns: tuple[str, ...],
    with_values: Callable[[dict[str, Any]], Any],
) -> DriverStatement:
    stmt = cache.get(columns)
    if stmt is None:
        stmt = cache[columns] = DriverStatement(
            with_values({c: bindparam(f"new_{c}") for c in columns})
        )
    return stmt


def insert_trial(columns: tuple[str, ...]) -> DriverStatement:
    """The INSERT of a trial row that sets `columns`."""
    return _by_columns(_INSERT_TRIAL, columns, lambda v: insert(trials).values(v))


def update_trial(columns: tuple[str, ...]) -> DriverStatement:
    """The UPDATE of one trial (sid, tid) that sets `columns`."""
    return _by_columns(_UPDATE_TRIAL, columns, lambda v: update(trials).where(TRIAL_KEY).values(v))
