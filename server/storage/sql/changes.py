"""What views that follow a study read (ListStudyChanges, a study's last activity): the
trials that may have changed since a time, reports' values as columns, and the latest
trial times of each study, each in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, func, or_, select

from tunewire.server.domain.study import TrialState
from tunewire.server.storage.sql.schema import measurements, trials
from tunewire.server.storage.sql.statements import DriverStatement

# The JSON number under a key of a text column, as SQL, for the dialect at hand.
JsonNumber = Any
# A trial in one of these states may change at any time (a report, a heartbeat, a hand-out).
_OPEN_STATES = (TrialState.REQUESTED.value, TrialState.ACTIVE.value)


def changed_since(since: float) -> ColumnElement[bool]:
    """Trials that may have changed at or after `since`: open ones, and those that ended
    since (a trial created or started since is one or the other). Both terms are ranges of
    an index."""
    return or_(trials.c.state.in_(_OPEN_STATES), trials.c.ended_at >= since)


def trial_times(conn: Connection, study_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Per study: the latest creation, start or end of a trial, and the latest lease end of
    an ACTIVE trial (0.0 where there is none), from index ranges: the newest trial was
    created last, and a started trial has ended or is ACTIVE."""
    out = {}
    for sid in study_ids:
        created, ended, started, lease = TRIAL_TIMES.execute(conn, {"sid": sid}).fetchone()
        latest = max(float(created or 0.0), float(ended or 0.0), float(started or 0.0))
        out[sid] = (latest, float(lease or 0.0))
    return out


def report_values(
    conn: Connection,
    json_number: JsonNumber,
    study_id: int,
    metrics: Sequence[str],
    *,
    since: float,
    after: tuple[int, int],
    last_id: int,
    limit: int,
) -> list[tuple[Any, ...]]:
    """(trial id, step, the values of `metrics`...) of the reports recorded at or after `since`,
    after (trial id, step) `after`, of trials up to `last_id`, by trial and step. The
    first metric is the study's primary one, read from the column every report keeps it
    in; with no other metric (the common case) the query runs on the driver's cursor,
    as a large study's first read returns hundreds of thousands of rows."""
    after_id, after_step = after
    params = {
        "sid": study_id,
        "first": after_id,
        "last": last_id,
        "since": since,
        "after_step": after_step,
        "limit": limit,
    }
    if len(metrics) == 1:
        return list(PRIMARY_VALUES.execute(conn, params).fetchall())
    extra = [json_number(measurements.c.metrics_json, name) for name in metrics[1:]]
    stmt = _REPORTS.with_only_columns(
        measurements.c.trial_id, measurements.c.step, measurements.c.value, *extra
    )
    return [tuple(r) for r in conn.execute(stmt, params)]


_IN_STUDY = trials.c.study_id == bindparam("sid")
_ACTIVE = trials.c.state == TrialState.ACTIVE.value
TRIAL_TIMES = DriverStatement(
    select(
        select(trials.c.created_at)
        .where(_IN_STUDY)
        .order_by(trials.c.trial_id.desc())
        .limit(1)
        .scalar_subquery(),
        select(func.max(trials.c.ended_at)).where(_IN_STUDY).scalar_subquery(),
        select(func.max(trials.c.started_at)).where(_IN_STUDY, _ACTIVE).scalar_subquery(),
        select(func.max(trials.c.lease_expires)).where(_IN_STUDY, _ACTIVE).scalar_subquery(),
    )
)
_REPORTS = (
    select(measurements.c.trial_id, measurements.c.step, measurements.c.value)
    .where(
        measurements.c.study_id == bindparam("sid"),
        measurements.c.trial_id >= bindparam("first"),
        measurements.c.trial_id <= bindparam("last"),
        measurements.c.created_at >= bindparam("since"),
        or_(
            measurements.c.trial_id > bindparam("first"),
            measurements.c.step > bindparam("after_step"),
        ),
    )
    .order_by(measurements.c.trial_id, measurements.c.step)
    .limit(bindparam("limit", literal_execute=False))
)
PRIMARY_VALUES = DriverStatement(_REPORTS)
