"""What early stopping reads of the other trials, reduced in SQL: one number per trial (see
`PeerQuery`), or just their count and median. A report in a large study costs one pass
over the study's measurements in the database instead of loading and parsing every curve."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from tunewire.server.domain.early_stopping import PeerQuery
from tunewire.server.domain.study import TrialState
from tunewire.server.storage.sql.schema import measurements, trials

# The JSON number under a key of a text column, as SQL, for the dialect at hand.
JsonNumber = Any


def peer_values(
    conn: Connection,
    json_number: JsonNumber,
    study_id: int,
    query: PeerQuery,
    metric: str,
    exclude: int,
) -> list[float]:
    """`query`'s number of `metric` for each trial of the study but `exclude` that has one.
    Reports without the metric do not count."""
    per_peer = _per_peer(json_number, study_id, query, metric, exclude)
    return [float(v) for (v,) in conn.execute(select(per_peer.c.v))]


def peer_median(
    conn: Connection,
    json_number: JsonNumber,
    study_id: int,
    query: PeerQuery,
    metric: str,
    exclude: int,
) -> tuple[int, float | None]:
    """How many `peer_values` there are and their median (None when there are none),
    found by the database: two rows come back instead of one per trial."""
    per_peer = _per_peer(json_number, study_id, query, metric, exclude)
    ranked = select(
        per_peer.c.v,
        (func.row_number().over(order_by=per_peer.c.v) - 1).label("k"),
        func.count().over().label("n"),
    ).subquery()
    # The 0-based middle ranks (n-1)//2 and n//2 are the k with n-2 <= 2k <= n.
    rows = conn.execute(
        select(ranked.c.v, ranked.c.n)
        .where(2 * ranked.c.k >= ranked.c.n - 2, 2 * ranked.c.k <= ranked.c.n)
        .order_by(ranked.c.k)
    ).all()
    if not rows:
        return 0, None
    middle = [float(v) for v, _ in rows]
    return int(rows[0][1]), middle[0] if len(middle) == 1 else (middle[0] + middle[1]) / 2


def _per_peer(
    json_number: JsonNumber, study_id: int, query: PeerQuery, metric: str, exclude: int
) -> Any:
    """`peer_values` as a subquery with one column, v."""
    reduce, step, completed_only = query.reduce, query.step, query.completed_only
    m = measurements
    # A report's `value` column holds its primary metric. A replica still running code
    # from before that column (a rolling upgrade) writes reports without it: those are
    # read from their JSON instead (COALESCE reads it only for them).
    report_value = func.coalesce(m.c.value, json_number(m.c.metrics_json, metric))
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
