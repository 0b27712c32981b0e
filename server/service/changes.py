"""A study as a feed of changes, for live views that poll (ListStudyChanges): the trials
that may have changed since a cursor and the values of the study's metrics reported since,
read in one transaction. Changes are given at least once: each pass reaches back
CHANGES_OVERLAP_SECONDS before its read, and the caller applies them by id."""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any

from tunewire.server.domain.limits import CHANGES_OVERLAP_SECONDS, MAX_CHANGED_REPORTS
from tunewire.server.domain.study import Study, Trial
from tunewire.server.service.access import StudyAccess
from tunewire.server.storage.base import StudyStore


@dataclass(frozen=True)
class ChangeCursor:
    """Where a ListStudyChanges call goes on: changes at or after `since` (server clock;
    0: the whole study), from trial `first_id` on, and within that trial the reports after
    step `after_step`. `started` is when the pass of pages this cursor continues began (0:
    a new pass), so that the next pass reaches back before its first page."""

    since: float = 0.0
    first_id: int = 0
    after_step: int = -1
    started: float = 0.0


@dataclass(frozen=True)
class TrialCurve:
    """The values of one metric at the steps of one trial, as columns."""

    trial_id: int
    metric: str
    steps: list[int]
    values: list[float]


@dataclass(frozen=True)
class StudyChanges:
    study: Study
    trials: list[Trial]
    curves: list[TrialCurve]
    next_cursor: ChangeCursor
    more: bool


def read_changes(
    access: StudyAccess,
    store: StudyStore,
    name: str,
    cursor: ChangeCursor,
    size: int,
    report_limit: int = MAX_CHANGED_REPORTS,
) -> StudyChanges:
    """One page of the study's changes since `cursor`: at most `size` trials and
    `report_limit` reports, with the cursor of the next page or pass."""
    study, spec, now = access.touch_study(store, name)
    started = cursor.started or now
    metrics = [m.name for m in spec.metrics]
    found = store.trials(
        study, changed_since=cursor.since, after_id=cursor.first_id - 1, limit=size + 1
    )
    more = len(found) > size
    found = found[:size]
    # A report made since `since` is on a trial that was ACTIVE then, so is among the
    # changed ones: the reports of the page's id range are those of its trials.
    rows = store.report_values(
        study,
        metrics,
        since=cursor.since,
        after=(cursor.first_id, cursor.after_step),
        last_id=found[-1].id if found else 0,
        limit=report_limit + 1,
    )
    if len(rows) > report_limit:
        # Cut inside the trial of the last report kept: the next page starts with it.
        rows = rows[:report_limit]
        last_id, last_step = rows[-1][0], rows[-1][1]
        found = [t for t in found if t.id <= last_id]
        following = ChangeCursor(cursor.since, last_id, last_step, started)
        more = True
    elif more:
        following = ChangeCursor(cursor.since, found[-1].id + 1, -1, started)
    else:
        following = ChangeCursor(max(0.0, started - CHANGES_OVERLAP_SECONDS))
    return StudyChanges(
        access.to_study(store, study), found, curves_of(rows, metrics), following, more
    )


def curves_of(rows: list[tuple[Any, ...]], metrics: list[str]) -> list[TrialCurve]:
    """`StudyStore.report_values` rows as one curve per trial and metric that has values."""
    curves = []
    for trial_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        columns = list(zip(*group, strict=True))
        for k, metric in enumerate(metrics):
            steps, values = columns[1], columns[2 + k]
            if None in values:  # reports without the metric
                kept = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
                steps, values = tuple(s for s, _ in kept), tuple(v for _, v in kept)
            if steps:
                curves.append(TrialCurve(int(trial_id), metric, list(steps), list(values)))
    return curves
