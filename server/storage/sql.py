"""SQL storage of studies, trials and measurements: SQLite (default) and PostgreSQL.

Every service call runs as one transaction through `Storage.run(fn)`, where `fn` gets a
`Repository` bound to that transaction. Concurrency between threads, processes and
replicas is handled by the database only:
- SQLite: every write transaction starts with BEGIN IMMEDIATE (one writer at a time), WAL.
- PostgreSQL: `lock_study` takes a transaction-scoped advisory lock per study for
  structural changes (new trials, retries, state); per-trial writes lock the trial row.
Transient conflicts (deadlock, serialization failure, busy database) are retried.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from tunewire.server.early_stopping import PeerQuery
from tunewire.server.errors import StorageUnavailable
from tunewire.server.storage.schema import measurements, studies, trials
from tunewire.server.study import (
    Measurement,
    StopDecision,
    Trial,
    TrialSource,
    TrialState,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
DEFAULT_SQLITE_FILE = "tunewire.db"
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
RETRYABLE_PG_CODES = {"40001", "40P01"}


def default_storage_url() -> str:
    """A SQLite file in the working directory."""
    return f"sqlite:///{os.path.abspath(DEFAULT_SQLITE_FILE)}"


def normalise_url(url: str) -> str:
    """Accepts postgres:// and postgresql:// URLs and selects the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class StudyRow:
    id: int
    name: str
    spec_json: str
    state: str
    created_at: float


# Hot-path statements are built once: constructing SQLAlchemy expressions per call costs
# as much as executing them.
_STUDY_COLUMNS = (
    studies.c.id,
    studies.c.name,
    studies.c.spec_json,
    studies.c.state,
    studies.c.created_at,
)
_FIND_STUDY = select(*_STUDY_COLUMNS).where(studies.c.name == bindparam("name"))
_TRIAL_KEY = and_(trials.c.study_id == bindparam("sid"), trials.c.trial_id == bindparam("tid"))
_GET_TRIAL = select(trials).where(_TRIAL_KEY)
_GET_TRIAL_FOR_UPDATE = _GET_TRIAL.with_for_update()
_HAS_EXPIRED = (
    select(trials.c.trial_id)
    .where(
        and_(
            trials.c.study_id == bindparam("sid"),
            trials.c.state == TrialState.ACTIVE.value,
            trials.c.lease_expires < bindparam("now"),
        )
    )
    .limit(1)
)
# The study, one of its trials and whether any lease of the study has expired, in one
# round trip: the calls a worker makes most (reports, heartbeats) need exactly this.
_EXPIRED_TRIALS = trials.alias("expired")
_STUDY_TRIAL = (
    select(
        *_STUDY_COLUMNS,
        select(_EXPIRED_TRIALS.c.trial_id)
        .where(
            and_(
                _EXPIRED_TRIALS.c.study_id == studies.c.id,
                _EXPIRED_TRIALS.c.state == TrialState.ACTIVE.value,
                _EXPIRED_TRIALS.c.lease_expires < bindparam("now"),
            )
        )
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
_TRIAL_KEYS = tuple(trials.c.keys())
_GET_MEASUREMENT = select(measurements).where(
    and_(
        measurements.c.study_id == bindparam("sid"),
        measurements.c.trial_id == bindparam("tid"),
        measurements.c.step == bindparam("step"),
    )
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class DriverStatement:
    """A hot-path statement, compiled by SQLAlchemy once per dialect and executed on the
    driver's cursor within the caller's transaction.

    SQLAlchemy's per-execution bookkeeping (cache key, events, result wrapping) costs
    several times the query itself on SQLite (about 70 µs vs 12 µs for a lookup), and
    on SQLite every write transaction runs while holding the one writer lock, so it
    bounds the whole server's throughput. Driver errors are raised as SQLAlchemy's
    exceptions, so `Storage.run` retries and reports them as for any other statement.
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
_BEGIN_IMMEDIATE = DriverStatement(text("BEGIN IMMEDIATE"))
_BEGIN_DEFERRED = DriverStatement(text("BEGIN"))
# The execution option that marks a connection's transaction read-only (Storage.run).
_READ_ONLY = "tunewire_read_only"


class NeedsWrite(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a read-only transaction that finds it has to write after all (a
    lease to expire): the caller runs the unit of work again as a write transaction."""


# The statements of every worker's calls (suggest, report, heartbeat, complete), prebuilt.
_FIND_STUDY_PREBUILT = DriverStatement(_FIND_STUDY)
_HAS_EXPIRED_PREBUILT = DriverStatement(_HAS_EXPIRED)
# Trial inserts and updates by the columns they set (a handful of shapes).
_INSERT_TRIAL: dict[tuple[str, ...], DriverStatement] = {}
_UPDATE_TRIAL: dict[tuple[str, ...], DriverStatement] = {}


def _by_columns(
    cache: dict[tuple[str, ...], DriverStatement],
    columns: tuple[str, ...],
    with_values: Callable[[dict[str, Any]], Any],
) -> DriverStatement:
    """The cached statement that sets `columns`, each from the parameter new_<column>;
    `with_values` makes it from those bound parameters."""
    stmt = cache.get(columns)
    if stmt is None:
        stmt = cache[columns] = DriverStatement(
            with_values({c: bindparam(f"new_{c}") for c in columns})
        )
    return stmt


_FIND_STUDY_TRIAL = DriverStatement(_STUDY_TRIAL)
_FIND_STUDY_TRIAL_FOR_UPDATE = DriverStatement(
    _STUDY_TRIAL, postgresql=_STUDY_TRIAL.with_for_update(of=trials)
)
_RENEW_LEASE = DriverStatement(
    update(trials).where(_TRIAL_KEY).values(lease_expires=bindparam("lease"))
)
# Inserts unless (trial, step) exists; RETURNING says whether it did (psycopg 3's rowcount
# is not reliable for INSERT).
_INSERT_MEASUREMENT = DriverStatement(
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
_RENEW_AND_INSERT_MEASUREMENT = DriverStatement(
    pg_insert(measurements)
    .add_cte(
        update(trials).where(_TRIAL_KEY).values(lease_expires=bindparam("lease")).cte("renewed")
    )
    .values(_MEASUREMENT_VALUES)
    .on_conflict_do_nothing()
    .returning(measurements.c.step)
)

# The statements of a suggestion (its common shapes: a worker's held trials, the enqueued
# ones, the id counter), built once instead of at every call.
_HELD_TRIALS = DriverStatement(
    select(trials)
    .where(
        and_(
            trials.c.study_id == bindparam("sid"),
            trials.c.state == bindparam("state"),
            trials.c.worker_id == bindparam("worker"),
        )
    )
    .order_by(trials.c.trial_id)
)
_TRIALS_IN_STATE = DriverStatement(
    select(trials)
    .where(and_(trials.c.study_id == bindparam("sid"), trials.c.state == bindparam("state")))
    .order_by(trials.c.trial_id)
    .limit(bindparam("limit", literal_execute=False))
)
_MAX_TRIAL_ID = DriverStatement(
    select(func.coalesce(func.max(trials.c.trial_id), 0)).where(
        trials.c.study_id == bindparam("sid")
    )
)
_ALLOCATE_TRIAL_IDS = DriverStatement(
    update(studies)
    .where(studies.c.id == bindparam("sid"))
    .values(next_trial_id=studies.c.next_trial_id + bindparam("n"))
    .returning(studies.c.next_trial_id)
)
_LOCK_STUDY = DriverStatement(text("SELECT pg_advisory_xact_lock(20517, :sid)"))


class Repository:
    """Reads and writes within one transaction. Only the service calls it."""

    def __init__(self, conn: Connection, *, read_only: bool = False) -> None:
        self.conn = conn
        self.is_postgres = conn.dialect.name == "postgresql"
        # A read-only transaction must not write; see NeedsWrite.
        self.read_only = read_only

    # -- studies ------------------------------------------------------------------
    def lock_study(self, study_id: int) -> None:
        """Serialises structural changes of one study across replicas (PostgreSQL);
        SQLite transactions are already serialised by BEGIN IMMEDIATE."""
        if self.is_postgres:
            _LOCK_STUDY.execute(self.conn, {"sid": study_id}).fetchall()

    def find_study(self, name: str) -> StudyRow | None:
        row = _FIND_STUDY_PREBUILT.execute(self.conn, {"name": name}).fetchone()
        return StudyRow(*row) if row else None

    def find_study_trial(
        self, name: str, trial_id: int, now: float, *, for_update: bool = False
    ) -> tuple[StudyRow, Trial, bool] | None:
        """The study, its trial (locked for update on PostgreSQL when asked) and whether
        any lease of the study expired before `now`; None when either does not exist."""
        stmt = _FIND_STUDY_TRIAL_FOR_UPDATE if for_update else _FIND_STUDY_TRIAL
        row = stmt.execute(self.conn, {"name": name, "tid": trial_id, "now": now}).fetchone()
        if row is None:
            return None
        trial = _trial_from_row(dict(zip(_TRIAL_KEYS, row[6:], strict=True)))
        return StudyRow(*row[:5]), trial, bool(row[5])

    def insert_study(self, name: str, spec_json: str, state: str, now: float) -> StudyRow | None:
        """Inserts a study; None when the name is taken (a concurrent create)."""
        stmt: Any
        if self.is_postgres:
            stmt = pg_insert(studies).on_conflict_do_nothing(index_elements=["name"])
        else:
            stmt = insert(studies).prefix_with("OR IGNORE")
        row = self.conn.execute(
            stmt.values(name=name, spec_json=spec_json, state=state, created_at=now).returning(
                *_STUDY_COLUMNS
            )
        ).first()
        return StudyRow(*row) if row else None

    def list_studies(self, after_name: str, limit: int) -> list[StudyRow]:
        rows = self.conn.execute(
            select(
                studies.c.id,
                studies.c.name,
                studies.c.spec_json,
                studies.c.state,
                studies.c.created_at,
            )
            .where(studies.c.name > after_name)
            .order_by(studies.c.name)
            .limit(limit)
        ).all()
        return [StudyRow(*r) for r in rows]

    def delete_study(self, study_id: int) -> None:
        # Explicit child deletes: SQLite enforces ON DELETE CASCADE only with a pragma.
        self.conn.execute(delete(measurements).where(measurements.c.study_id == study_id))
        self.conn.execute(delete(trials).where(trials.c.study_id == study_id))
        self.conn.execute(delete(studies).where(studies.c.id == study_id))

    def set_study_state(self, study_id: int, state: str) -> None:
        self.conn.execute(update(studies).where(studies.c.id == study_id).values(state=state))

    def trial_counts(self, study_ids: Sequence[int]) -> dict[int, dict[TrialState, int]]:
        out: dict[int, dict[TrialState, int]] = {i: {} for i in study_ids}
        if not study_ids:
            return out
        rows = self.conn.execute(
            select(trials.c.study_id, trials.c.state, func.count())
            .where(trials.c.study_id.in_(list(study_ids)))
            .group_by(trials.c.study_id, trials.c.state)
        ).all()
        for sid, state, n in rows:
            out[sid][TrialState(state)] = int(n)
        return out

    def allocate_trial_ids(self, study_id: int, n: int) -> int:
        """Reserves n consecutive trial ids; returns the first."""
        first = _ALLOCATE_TRIAL_IDS.execute(self.conn, {"sid": study_id, "n": n}).fetchone()[0]
        return int(first) - n

    # -- trials -------------------------------------------------------------------
    def insert_trials(self, study_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            params = {"new_study_id": study_id, **{f"new_{c}": v for c, v in r.items()}}
            by_columns.setdefault(("study_id", *r), []).append(params)
        for columns, params_list in by_columns.items():
            stmt = _by_columns(_INSERT_TRIAL, columns, lambda v: insert(trials).values(v))
            stmt.execute_many(self.conn, params_list)

    def get_trial(self, study_id: int, trial_id: int, *, for_update: bool = False) -> Trial | None:
        stmt = _GET_TRIAL_FOR_UPDATE if for_update and self.is_postgres else _GET_TRIAL
        row = self.conn.execute(stmt, {"sid": study_id, "tid": trial_id}).mappings().first()
        return _trial_from_row(row) if row else None

    def final_results(
        self, study_id: int, states: Iterable[TrialState]
    ) -> list[tuple[int, TrialState, dict[str, float]]]:
        """(trial id, state, final metrics) of the study's trials in these states that have
        final metrics: what ranking needs, without parsing every trial's parameters."""
        rows = self.conn.execute(
            select(trials.c.trial_id, trials.c.state, trials.c.final_metrics_json)
            .where(
                trials.c.study_id == study_id,
                trials.c.state.in_([s.value for s in states]),
                trials.c.final_metrics_json.is_not(None),
            )
            .order_by(trials.c.trial_id)
        )
        return [(int(tid), TrialState(state), json.loads(fm)) for tid, state, fm in rows]

    def best_by_metric(
        self,
        study_id: int,
        states: Iterable[TrialState],
        metric: str,
        *,
        maximize: bool,
        count: int,
    ) -> list[int]:
        """Ids of the `count` trials in these states with the best final value of `metric`
        (ties: the older first), ranked by the database."""
        column = trials.c.final_metrics_json
        value = self._json_number(column, metric)
        rows = self.conn.execute(
            select(trials.c.trial_id)
            .where(
                trials.c.study_id == study_id,
                trials.c.state.in_([s.value for s in states]),
                column.is_not(None),
                value.is_not(None),
            )
            .order_by(value.desc() if maximize else value.asc(), trials.c.trial_id)
            .limit(count)
        )
        return [int(tid) for (tid,) in rows]

    def _json_number(self, column: Any, key: str) -> Any:
        """The number under `key` in a text column holding a JSON object, as SQL."""
        # The column is text: PostgreSQL parses it as JSON; SQLite's JSON functions take
        # text (a CAST to JSON there would turn it into a number).
        as_json = cast(column, JSON) if self.is_postgres else type_coerce(column, JSON)
        return as_json[key].as_float()

    def trials_by_id(self, study_id: int, trial_ids: Sequence[int]) -> list[Trial]:
        """The study's trials with these ids, ordered by id."""
        if not trial_ids:
            return []
        rows = self.conn.execute(
            select(trials)
            .where(trials.c.study_id == study_id, trials.c.trial_id.in_(list(trial_ids)))
            .order_by(trials.c.trial_id)
        ).mappings()
        return [_trial_from_row(r) for r in rows]

    def renew_lease(self, study_id: int, trial_id: int, expires: float) -> None:
        _RENEW_LEASE.execute(self.conn, {"sid": study_id, "tid": trial_id, "lease": expires})

    def update_trial(self, study_id: int, trial_id: int, **values: Any) -> None:
        if "final_metrics" in values:
            fm = values.pop("final_metrics")
            values["final_metrics_json"] = None if fm is None else _json(fm)
        stmt = _by_columns(
            _UPDATE_TRIAL, tuple(values), lambda v: update(trials).where(_TRIAL_KEY).values(v)
        )
        stmt.execute(
            self.conn,
            {"sid": study_id, "tid": trial_id, **{f"new_{c}": v for c, v in values.items()}},
        )

    def trials_where(
        self,
        study_id: int,
        *,
        states: Iterable[TrialState] = (),
        worker_id: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[Trial]:
        state_list = [s.value for s in states]
        if len(state_list) == 1 and not after_id:
            # The shapes a suggestion asks for, prebuilt.
            cursor = None
            if worker_id is not None and limit is None:
                cursor = _HELD_TRIALS.execute(
                    self.conn, {"sid": study_id, "state": state_list[0], "worker": worker_id}
                )
            elif worker_id is None and limit is not None:
                cursor = _TRIALS_IN_STATE.execute(
                    self.conn, {"sid": study_id, "state": state_list[0], "limit": limit}
                )
            if cursor is not None:
                return [_trial_from_row(dict(zip(_TRIAL_KEYS, r, strict=True))) for r in cursor]
        conditions = [trials.c.study_id == study_id, trials.c.trial_id > after_id]
        if state_list:
            conditions.append(trials.c.state.in_(state_list))
        if worker_id is not None:
            conditions.append(trials.c.worker_id == worker_id)
        stmt = select(trials).where(and_(*conditions)).order_by(trials.c.trial_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_trial_from_row(r) for r in self.conn.execute(stmt).mappings()]

    def has_expired_leases(self, study_id: int, now: float) -> bool:
        cursor = _HAS_EXPIRED_PREBUILT.execute(self.conn, {"sid": study_id, "now": now})
        return cursor.fetchone() is not None

    def mark_expired_lost(self, study_id: int, now: float) -> list[Trial]:
        """Marks ACTIVE trials with an expired lease LOST; returns them as they were."""
        expired = (
            self.conn.execute(
                select(trials)
                .where(
                    and_(
                        trials.c.study_id == study_id,
                        trials.c.state == TrialState.ACTIVE.value,
                        trials.c.lease_expires < now,
                    )
                )
                .order_by(trials.c.trial_id)
            )
            .mappings()
            .all()
        )
        lost = [_trial_from_row(r) for r in expired]
        for t in lost:
            self.update_trial(
                study_id,
                t.id,
                state=TrialState.LOST.value,
                ended_at=now,
                reason=f"lease expired at {t.lease_expires:.3f} (worker {t.worker_id!r})",
            )
        return lost

    def max_trial_id(self, study_id: int) -> int:
        return int(_MAX_TRIAL_ID.execute(self.conn, {"sid": study_id}).fetchone()[0])

    def count_in_state(self, study_id: int, state: TrialState) -> int:
        """The study's trials in one state (an index range: cheap in a large study)."""
        return int(
            self.conn.execute(
                select(func.count()).where(
                    and_(trials.c.study_id == study_id, trials.c.state == state.value)
                )
            ).scalar_one()
        )

    def count_budget_trials(self, study_id: int) -> int:
        """Trials that use the trial budget: everything but LOST and REQUESTED.

        Trial ids are 1, 2, ... without gaps (allocated under the study's lock in the
        transaction that inserts them; trials are never deleted one by one), so the
        largest id is the number of trials, and only the two excluded states are
        counted: index ranges instead of a pass over the whole study on every
        suggestion.
        """
        return (
            self.max_trial_id(study_id)
            - self.count_in_state(study_id, TrialState.LOST)
            - self.count_in_state(study_id, TrialState.REQUESTED)
        )

    # -- measurements ---------------------------------------------------------------
    def get_measurement(self, study_id: int, trial_id: int, step: int) -> Measurement | None:
        row = (
            self.conn.execute(_GET_MEASUREMENT, {"sid": study_id, "tid": trial_id, "step": step})
            .mappings()
            .first()
        )
        return _measurement_from_row(row) if row else None

    def delete_measurements(self, study_id: int, trial_id: int) -> None:
        self.conn.execute(
            delete(measurements).where(
                and_(measurements.c.study_id == study_id, measurements.c.trial_id == trial_id)
            )
        )

    def insert_measurement(
        self,
        study_id: int,
        trial_id: int,
        m: Measurement,
        primary_metric: str,
        *,
        renew_lease_to: float | None = None,
    ) -> bool:
        """Inserts unless (trial, step) exists; returns whether it was inserted. With
        `renew_lease_to`, also sets the trial's lease expiry (whether or not the step was
        new), on PostgreSQL in the same statement."""
        values = {
            "study_id": study_id,
            "trial_id": trial_id,
            "step": m.step,
            "metrics_json": _json(dict(m.metrics)),
            "elapsed_seconds": m.elapsed_seconds,
            "created_at": m.time,
            "value": m.metrics.get(primary_metric),
        }
        if renew_lease_to is None:
            cursor = _INSERT_MEASUREMENT.execute(self.conn, values)
        elif self.is_postgres:
            cursor = _RENEW_AND_INSERT_MEASUREMENT.execute(
                self.conn, {**values, "sid": study_id, "tid": trial_id, "lease": renew_lease_to}
            )
        else:
            self.renew_lease(study_id, trial_id, renew_lease_to)
            cursor = _INSERT_MEASUREMENT.execute(self.conn, values)
        return cursor.fetchone() is not None

    def measurements_of(
        self, study_id: int, trial_ids: Sequence[int] | None = None
    ) -> dict[int, list[Measurement]]:
        """Measurements by trial id, ordered by step (all trials when trial_ids is None)."""
        conditions = [measurements.c.study_id == study_id]
        if trial_ids is not None:
            if not trial_ids:
                return {}
            conditions.append(measurements.c.trial_id.in_(list(trial_ids)))
        rows = self.conn.execute(
            select(measurements)
            .where(and_(*conditions))
            .order_by(measurements.c.trial_id, measurements.c.step)
        ).mappings()
        out: dict[int, list[Measurement]] = {}
        for r in rows:
            out.setdefault(int(r["trial_id"]), []).append(_measurement_from_row(r))
        return out

    def peer_values(
        self, study_id: int, query: PeerQuery, *, metric: str, exclude: int
    ) -> list[float]:
        """`query`'s number of `metric` (see PeerQuery) for each trial of the study but
        `exclude` that has one, reduced over its reports in the database. Reports without
        the metric do not count.

        Early stopping reads these on every report: they cost one pass over the study's
        measurements in the database instead of loading and parsing every curve.
        """
        per_peer = self._per_peer(study_id, query, metric, exclude)
        return [float(v) for (v,) in self.conn.execute(select(per_peer.c.v))]

    def peer_median(
        self, study_id: int, query: PeerQuery, *, metric: str, exclude: int
    ) -> tuple[int, float | None]:
        """How many `peer_values` there are and their median (None when there are none),
        found by the database: two rows come back instead of one per trial."""
        per_peer = self._per_peer(study_id, query, metric, exclude)
        ranked = select(
            per_peer.c.v,
            (func.row_number().over(order_by=per_peer.c.v) - 1).label("k"),
            func.count().over().label("n"),
        ).subquery()
        # The 0-based middle ranks (n-1)//2 and n//2 are the k with n-2 <= 2k <= n.
        rows = self.conn.execute(
            select(ranked.c.v, ranked.c.n)
            .where(2 * ranked.c.k >= ranked.c.n - 2, 2 * ranked.c.k <= ranked.c.n)
            .order_by(ranked.c.k)
        ).all()
        if not rows:
            return 0, None
        middle = [float(v) for v, _ in rows]
        return int(rows[0][1]), middle[0] if len(middle) == 1 else (middle[0] + middle[1]) / 2

    def _per_peer(self, study_id: int, query: PeerQuery, metric: str, exclude: int) -> Any:
        """`peer_values` as a subquery with one column, v."""
        reduce, step, completed_only = query.reduce, query.step, query.completed_only
        m = measurements
        # A report's `value` column holds its primary metric. A replica still running
        # code from before that column (a rolling upgrade) writes reports without it:
        # those are read from their JSON instead (COALESCE reads it only for them).
        report_value = func.coalesce(m.c.value, self._json_number(m.c.metrics_json, metric))
        if reduce == "mean":
            where: list[ColumnElement[bool]] = [
                m.c.study_id == study_id,
                m.c.trial_id != exclude,
                m.c.step <= step,
                report_value.is_not(None),
            ]
            if completed_only:
                where.append(
                    m.c.trial_id.in_(
                        select(trials.c.trial_id).where(
                            trials.c.study_id == study_id,
                            trials.c.state == TrialState.COMPLETED.value,
                        )
                    )
                )
            return (
                select(func.avg(report_value).label("v"))
                .where(*where)
                .group_by(m.c.trial_id)
                .subquery()
            )
        if reduce not in ("last", "first"):
            raise ValueError(f"unknown reduction {reduce!r}")
        # One index seek per trial: its report nearest to `step` on the asked side.
        last = reduce == "last"
        nearest = (
            select(report_value)
            .where(
                m.c.study_id == study_id,
                m.c.trial_id == trials.c.trial_id,
                m.c.step <= step if last else m.c.step >= step,
                report_value.is_not(None),
            )
            .order_by(m.c.step.desc() if last else m.c.step)
            .limit(1)
            .scalar_subquery()
        )
        peers = [trials.c.study_id == study_id, trials.c.trial_id != exclude]
        if completed_only:
            peers.append(trials.c.state == TrialState.COMPLETED.value)
        values = select(nearest.label("v")).where(*peers).subquery()
        return select(values.c.v).where(values.c.v.is_not(None)).subquery()


def _measurement_from_row(row: Any) -> Measurement:
    return Measurement(
        step=int(row["step"]),
        metrics=json.loads(row["metrics_json"]),
        elapsed_seconds=float(row["elapsed_seconds"]),
        time=float(row["created_at"]),
    )


def _trial_from_row(row: Any) -> Trial:
    stop = None
    if row["stop_step"] is not None:
        stop = StopDecision(int(row["stop_step"]), row["stop_rule"], row["stop_reason"])
    fm = row["final_metrics_json"]
    return Trial(
        study_name="",
        id=int(row["trial_id"]),
        parameters=json.loads(row["params_json"]),
        state=TrialState(row["state"]),
        source=TrialSource(row["source"]),
        worker_id=row["worker_id"],
        final_metrics=None if fm is None else json.loads(fm),
        reason=row["reason"],
        stop_decision=stop,
        retry_of=int(row["retry_of"]),
        attempt=int(row["attempt"]),
        create_time=float(row["created_at"]),
        start_time=float(row["started_at"]),
        end_time=float(row["ended_at"]),
        lease_expires=float(row["lease_expires"]),
    )


def trial_row(
    trial_id: int,
    params: Mapping[str, Any],
    state: TrialState,
    source: TrialSource,
    now: float,
    **extra: Any,
) -> dict[str, Any]:
    """A row for `Repository.insert_trials`."""
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "params_json": _json(dict(params)),
        "state": state.value,
        "source": source.value,
        "created_at": now,
    }
    if "final_metrics" in extra:
        fm = extra.pop("final_metrics")
        row["final_metrics_json"] = None if fm is None else _json(fm)
    row.update(extra)
    return row


class Storage:
    """Owns the engine; runs each unit of work in one transaction, retrying conflicts."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.url = normalise_url(url or default_storage_url())
        self.engine = self._create_engine(self.url)
        # SQLite has one writer at a time. Queueing this process's transactions on a lock
        # avoids SQLite's busy handler, which sleeps in steps of up to 100 ms; other
        # processes on the same file still coordinate through BEGIN IMMEDIATE.
        self._local_writer = threading.Lock() if self.url.startswith("sqlite") else None
        # Threads that keep a connection: thread id -> its connection (None: not yet made).
        self._kept: dict[int, Connection | None] = {}
        if migrate:
            self.migrate()

    @property
    def single_writer(self) -> bool:
        """True when one transaction at a time can write the whole database (SQLite)."""
        return self._local_writer is not None

    @staticmethod
    def _create_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=16,
                max_overflow=48,
            )

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (see below).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives a killed process (not a power cut).
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:
                # A write transaction takes the file's write lock at once, so it never
                # fails half-way on a lock; a read-only one reads a snapshot (WAL) and
                # neither waits for writers nor makes them wait.
                read_only = conn.get_execution_options().get(_READ_ONLY, False)
                (_BEGIN_DEFERRED if read_only else _BEGIN_IMMEDIATE).execute(conn, {})

            return engine
        if url.startswith("postgresql"):
            return create_engine(url, pool_size=16, max_overflow=48)
        return create_engine(url, poolclass=NullPool)

    def migrate(self) -> None:
        """Applies Alembic migrations up to head (safe when replicas start together)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def run(
        self, fn: Callable[[Repository], T], *, attempts: int = 8, read_only: bool = False
    ) -> T:
        """Runs fn in one transaction; commits on return, rolls back on exception.

        A `read_only` transaction must not write (fn raises NeedsWrite instead). On SQLite
        it then reads a snapshot without taking the write lock, so a long listing of a
        large study does not hold up every report behind it.

        Raises:
            StorageUnavailable: the database cannot be reached or stays locked.
        """
        for attempt in range(attempts):
            try:
                kept = None if read_only else self._kept_connection()
                if kept is not None:
                    return self._transaction(kept, fn, read_only=False)
                with self.engine.connect() as conn:
                    if read_only:
                        conn.execution_options(**{_READ_ONLY: True})
                    return self._transaction(conn, fn, read_only=read_only)
            except (OperationalError, DBAPIError) as exc:
                if not self._retryable(exc) or attempt == attempts - 1:
                    if isinstance(exc, OperationalError) or exc.connection_invalidated:
                        raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc
                    raise
                delay = min(0.5, 0.005 * 2**attempt) * (0.5 + random.random())
                log.info("retrying transaction after %s (attempt %d)", exc.orig, attempt + 1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _transaction(
        self, conn: Connection, fn: Callable[[Repository], T], *, read_only: bool
    ) -> T:
        """fn in one transaction on conn. A SQLite write holds this process's writer lock
        for the transaction only, not for the pool's checkout and checkin: the lock bounds
        the throughput of the process."""
        writer = self._local_writer if self._local_writer is not None and not read_only else None
        with writer or nullcontext(), conn.begin():
            return fn(Repository(conn, read_only=read_only))

    def keep_connection_on_this_thread(self) -> None:
        """Write transactions on this thread reuse one connection instead of checking one
        out of the pool for each: for the threads that run many short transactions one
        after another (the server's RPC threads, and its event loop on SQLite), where the
        checkout and checkin cost a quarter of a report's time. The connection is the
        thread's until `dispose`; read-only transactions still use the pool."""
        self._kept.setdefault(threading.get_ident(), None)

    def _kept_connection(self) -> Connection | None:
        """This thread's kept connection (made or remade when needed), or None."""
        ident = threading.get_ident()
        if ident not in self._kept:
            return None
        conn = self._kept[ident]
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept[ident] = self.engine.connect()
        return conn

    @staticmethod
    def _retryable(exc: DBAPIError) -> bool:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code in RETRYABLE_PG_CODES:
            return True
        message = str(exc.orig).lower()
        return "database is locked" in message or exc.connection_invalidated

    def dispose(self) -> None:
        for ident, conn in list(self._kept.items()):
            if conn is not None:
                conn.close()
                self._kept[ident] = None
        self.engine.dispose()
