"""`StudyStore` over SQL: the reads and writes of one transaction, in domain terms. One
class per dialect holds what differs between SQLite and PostgreSQL; `SqlStorage` picks
the class once, from the database URL."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    and_,
    cast,
    delete,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from tunewire.server.domain.early_stopping import PeerQuery
from tunewire.server.domain.lifecycle import TrialTally
from tunewire.server.domain.study import Measurement, StudyState, Trial, TrialState
from tunewire.server.storage.base import StudyRecord
from tunewire.server.storage.sql import changes, peers
from tunewire.server.storage.sql import statements as sql
from tunewire.server.storage.sql.rows import (
    ALL_TRIAL_COLUMNS,
    changed_columns,
    measurement_from_row,
    new_values,
    study_from_row,
    trial_columns,
    trial_from_row,
)
from tunewire.server.storage.sql.schema import measurements, studies, trials


class SqlStudyStore:
    """Reads and writes within one transaction on `conn` (see `StudyStore`)."""

    def __init__(self, conn: Connection, *, read_only: bool = False) -> None:
        self.conn = conn
        # A read-only transaction must not write; see NeedsWrite.
        self.read_only = read_only

    # -- what differs between dialects ---------------------------------------------------
    def lock_study(self, study: StudyRecord) -> None:
        """SQLite: nothing to do, as every write transaction holds the file's lock."""

    def _insert_study_or_ignore(self) -> Any:
        return insert(studies).prefix_with("OR IGNORE")

    def _json_number(self, column: Any, key: str) -> Any:
        """The number under `key` in a text column holding a JSON object, as SQL."""
        # SQLite's JSON functions take text (a CAST to JSON would turn it into a number).
        return type_coerce(column, JSON)[key].as_float()

    def _add_measurement_renewing(self, values: dict[str, Any], lease: float) -> Any:
        sql.RENEW_LEASE.execute(
            self.conn, {"sid": values["study_id"], "tid": values["trial_id"], "lease": lease}
        )
        return sql.INSERT_MEASUREMENT.execute(self.conn, values)

    # -- studies --------------------------------------------------------------------------
    def find_study(self, name: str) -> StudyRecord | None:
        row = sql.FIND_STUDY.execute(self.conn, {"name": name}).fetchone()
        return study_from_row(row) if row else None

    def add_study(
        self, name: str, spec_json: str, state: StudyState, now: float
    ) -> StudyRecord | None:
        row = self.conn.execute(
            self._insert_study_or_ignore()
            .values(name=name, spec_json=spec_json, state=state.value, created_at=now)
            .returning(*sql.STUDY_COLUMNS)
        ).first()
        return study_from_row(row) if row else None

    def list_studies(self, after_name: str, limit: int) -> list[StudyRecord]:
        rows = self.conn.execute(
            select(*sql.STUDY_COLUMNS)
            .where(studies.c.name > after_name)
            .order_by(studies.c.name)
            .limit(limit)
        ).all()
        return [study_from_row(r) for r in rows]

    def delete_study(self, study: StudyRecord) -> None:
        # Explicit child deletes: SQLite enforces ON DELETE CASCADE only with a pragma.
        self.conn.execute(delete(measurements).where(measurements.c.study_id == study.id))
        self.conn.execute(delete(trials).where(trials.c.study_id == study.id))
        self.conn.execute(delete(studies).where(studies.c.id == study.id))

    def set_study_state(self, study: StudyRecord, state: StudyState) -> None:
        self.conn.execute(update(studies).where(studies.c.id == study.id).values(state=state.value))

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

    def trial_times(self, study_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
        return changes.trial_times(self.conn, study_ids)

    def tally(self, study: StudyRecord) -> TrialTally:
        created, lost, requested, active = sql.TALLY.execute(
            self.conn, {"sid": study.id}
        ).fetchone()
        return TrialTally(int(created), int(lost), int(requested), int(active))

    # -- trials ---------------------------------------------------------------------------
    def find_study_trial(
        self, name: str, trial_id: int, now: float, *, for_update: bool = False
    ) -> tuple[StudyRecord, Trial, bool] | None:
        stmt = sql.FIND_STUDY_TRIAL_FOR_UPDATE if for_update else sql.FIND_STUDY_TRIAL
        row = stmt.execute(self.conn, {"name": name, "tid": trial_id, "now": now}).fetchone()
        if row is None:
            return None
        study = study_from_row(row[:5])
        trial = trial_from_row(study, dict(zip(sql.TRIAL_COLUMNS, row[6:], strict=True)))
        return study, trial, bool(row[5])

    def get_trial(
        self, study: StudyRecord, trial_id: int, *, for_update: bool = False
    ) -> Trial | None:
        stmt = select(trials).where(trials.c.study_id == study.id, trials.c.trial_id == trial_id)
        if for_update:
            stmt = self._for_update(stmt)
        row = self.conn.execute(stmt).mappings().first()
        return trial_from_row(study, row) if row else None

    def _for_update(self, stmt: Any) -> Any:
        return stmt  # SQLite: the transaction already holds the file's write lock

    def trials(
        self,
        study: StudyRecord,
        *,
        states: Iterable[TrialState] = (),
        worker_id: str | None = None,
        after_id: int = 0,
        ids: Sequence[int] | None = None,
        lease_before: float | None = None,
        request_id: str | None = None,
        changed_since: float | None = None,
        limit: int | None = None,
    ) -> list[Trial]:
        state_list = [s.value for s in states]
        if ids is not None and not ids:
            return []
        prebuilt = (
            ids is None and lease_before is None and request_id is None and changed_since is None
        )
        if len(state_list) == 1 and not after_id and prebuilt:
            # The shapes a suggestion asks for, prebuilt.
            cursor = None
            if worker_id is not None and limit is None:
                cursor = sql.HELD_TRIALS.execute(
                    self.conn, {"sid": study.id, "state": state_list[0], "worker": worker_id}
                )
            elif worker_id is None and limit is not None:
                cursor = sql.TRIALS_IN_STATE.execute(
                    self.conn, {"sid": study.id, "state": state_list[0], "limit": limit}
                )
            if cursor is not None:
                return [
                    trial_from_row(study, dict(zip(sql.TRIAL_COLUMNS, r, strict=True)))
                    for r in cursor
                ]
        conditions = [trials.c.study_id == study.id, trials.c.trial_id > after_id]
        if state_list:
            conditions.append(trials.c.state.in_(state_list))
        if worker_id is not None:
            conditions.append(trials.c.worker_id == worker_id)
        if ids is not None:
            conditions.append(trials.c.trial_id.in_(list(ids)))
        if lease_before is not None:
            conditions.append(trials.c.lease_expires < lease_before)
        if request_id is not None:
            conditions.append(trials.c.request_id == request_id)
        if changed_since is not None:
            conditions.append(changes.changed_since(changed_since))
        stmt = select(trials).where(and_(*conditions)).order_by(trials.c.trial_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [trial_from_row(study, r) for r in self.conn.execute(stmt).mappings()]

    def has_expired_leases(self, study: StudyRecord, now: float) -> bool:
        return (
            sql.HAS_EXPIRED.execute(self.conn, {"sid": study.id, "now": now}).fetchone() is not None
        )

    def add_trials(self, study: StudyRecord, new: Sequence[Trial]) -> list[Trial]:
        if not new:
            return []
        end = sql.ALLOCATE_TRIAL_IDS.execute(
            self.conn, {"sid": study.id, "n": len(new)}
        ).fetchone()[0]
        first = int(end) - len(new)
        added = [t.evolve(study_name=study.name, id=first + i) for i, t in enumerate(new)]
        rows = [{"new_study_id": study.id, **new_values(trial_columns(t))} for t in added]
        sql.insert_trial(("study_id", *ALL_TRIAL_COLUMNS)).execute_many(self.conn, rows)
        return added

    def save_trial(self, study: StudyRecord, before: Trial, after: Trial) -> None:
        changed = changed_columns(before, after)
        if changed:
            sql.update_trial(tuple(changed)).execute(
                self.conn, {"sid": study.id, "tid": after.id, **new_values(changed)}
            )

    def final_results(
        self, study: StudyRecord, states: Iterable[TrialState]
    ) -> list[tuple[int, TrialState, dict[str, float]]]:
        rows = self.conn.execute(
            select(trials.c.trial_id, trials.c.state, trials.c.final_metrics_json)
            .where(
                trials.c.study_id == study.id,
                trials.c.state.in_([s.value for s in states]),
                trials.c.final_metrics_json.is_not(None),
            )
            .order_by(trials.c.trial_id)
        )
        return [(int(tid), TrialState(state), json.loads(fm)) for tid, state, fm in rows]

    def best_by_metric(
        self,
        study: StudyRecord,
        states: Iterable[TrialState],
        metric: str,
        *,
        maximize: bool,
        count: int,
    ) -> list[int]:
        column = trials.c.final_metrics_json
        value = self._json_number(column, metric)
        rows = self.conn.execute(
            select(trials.c.trial_id)
            .where(
                trials.c.study_id == study.id,
                trials.c.state.in_([s.value for s in states]),
                column.is_not(None),
                value.is_not(None),
            )
            .order_by(value.desc() if maximize else value.asc(), trials.c.trial_id)
            .limit(count)
        )
        return [int(tid) for (tid,) in rows]

    # -- measurements ---------------------------------------------------------------------
    def measurements(
        self, study: StudyRecord, trial_ids: Sequence[int]
    ) -> dict[int, list[Measurement]]:
        if not trial_ids:
            return {}
        rows = self.conn.execute(
            select(measurements)
            .where(
                measurements.c.study_id == study.id,
                measurements.c.trial_id.in_(list(trial_ids)),
            )
            .order_by(measurements.c.trial_id, measurements.c.step)
        ).mappings()
        out: dict[int, list[Measurement]] = {}
        for r in rows:
            out.setdefault(int(r["trial_id"]), []).append(measurement_from_row(r))
        return out

    def get_measurement(self, study: StudyRecord, trial_id: int, step: int) -> Measurement | None:
        row = (
            self.conn.execute(sql.GET_MEASUREMENT, {"sid": study.id, "tid": trial_id, "step": step})
            .mappings()
            .first()
        )
        return measurement_from_row(row) if row else None

    def add_measurement(
        self,
        study: StudyRecord,
        trial_id: int,
        measurement: Measurement,
        value: float | None,
        *,
        renew_lease_to: float | None = None,
    ) -> bool:
        values = {
            "study_id": study.id,
            "trial_id": trial_id,
            "step": measurement.step,
            "metrics_json": sql.to_json(dict(measurement.metrics)),
            "elapsed_seconds": measurement.elapsed_seconds,
            "created_at": measurement.time,
            "value": value,
        }
        if renew_lease_to is None:
            cursor = sql.INSERT_MEASUREMENT.execute(self.conn, values)
        else:
            cursor = self._add_measurement_renewing(values, renew_lease_to)
        return cursor.fetchone() is not None

    def delete_measurements(self, study: StudyRecord, trial_id: int) -> None:
        self.conn.execute(
            delete(measurements).where(
                measurements.c.study_id == study.id, measurements.c.trial_id == trial_id
            )
        )

    def report_values(
        self,
        study: StudyRecord,
        metrics: Sequence[str],
        *,
        since: float = 0.0,
        after: tuple[int, int] = (0, -1),
        last_id: int,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        return changes.report_values(
            self.conn,
            self._json_number,
            study.id,
            metrics,
            since=since,
            after=after,
            last_id=last_id,
            limit=limit,
        )

    def peer_values(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> list[float]:
        return peers.peer_values(self.conn, self._json_number, study.id, query, metric, exclude)

    def peer_median(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> tuple[int, float | None]:
        return peers.peer_median(self.conn, self._json_number, study.id, query, metric, exclude)


class SqliteStudyStore(SqlStudyStore):
    """SQLite: one writer at a time holds the whole file (BEGIN IMMEDIATE)."""


class PostgresStudyStore(SqlStudyStore):
    """PostgreSQL: a per-study advisory lock for structural changes, row locks for
    per-trial writes, and a report's lease renewal and insert in one round trip."""

    def lock_study(self, study: StudyRecord) -> None:
        sql.LOCK_STUDY.execute(self.conn, {"sid": study.id}).fetchall()

    def _insert_study_or_ignore(self) -> Any:
        return pg_insert(studies).on_conflict_do_nothing(index_elements=["name"])

    def _json_number(self, column: Any, key: str) -> Any:
        return cast(column, JSON)[key].as_float()

    def _add_measurement_renewing(self, values: dict[str, Any], lease: float) -> Any:
        return sql.RENEW_AND_INSERT_MEASUREMENT.execute(
            self.conn,
            {**values, "sid": values["study_id"], "tid": values["trial_id"], "lease": lease},
        )

    def _for_update(self, stmt: Any) -> Any:
        return stmt.with_for_update()
