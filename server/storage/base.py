"""What the service needs of a database, in domain terms: a `StudyStore` bound to one
transaction, and a `Storage` that runs a unit of work in one. Backends (SQLite and
PostgreSQL in `storage/sql/`) implement these and pass the same conformance suite
(tests/server/storage/conformance.py); their differences stay behind them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tunewire.server.domain.early_stopping import PeerQuery
from tunewire.server.domain.lifecycle import TrialTally
from tunewire.server.domain.study import Measurement, StudyState, Trial, TrialState

T = TypeVar("T")


@dataclass(frozen=True)
class StudyRecord:
    """A stored study: its key, name, spec (canonical JSON) and state."""

    id: int
    name: str
    spec_json: str
    state: StudyState
    created_at: float


class NeedsWrite(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a read-only unit of work that finds it has to write after all (a
    lease to expire): the caller runs it again as a write transaction."""


class StudyStore(Protocol):
    """Reads and writes of one transaction. Trials come back with their study's name."""

    read_only: bool

    # -- studies ------------------------------------------------------------------------
    def find_study(self, name: str) -> StudyRecord | None:
        """The study of that name; None when there is none."""

    def lock_study(self, study: StudyRecord) -> None:
        """Serialises structural changes of the study (new trials, retries, its state)
        with every other transaction, on every replica, until this one ends."""

    def add_study(
        self, name: str, spec_json: str, state: StudyState, now: float
    ) -> StudyRecord | None:
        """The new study; None when the name is taken (a concurrent create)."""

    def list_studies(self, after_name: str, limit: int) -> list[StudyRecord]:
        """Studies by name, after `after_name`."""

    def delete_study(self, study: StudyRecord) -> None:
        """Deletes the study with its trials and their reports."""

    def set_study_state(self, study: StudyRecord, state: StudyState) -> None: ...

    def trial_counts(self, study_ids: Sequence[int]) -> dict[int, dict[TrialState, int]]:
        """Trials per state of each study."""

    def tally(self, study: StudyRecord) -> TrialTally:
        """What the budget rules read: trials created, LOST, REQUESTED and ACTIVE."""

    def trial_times(self, study_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
        """Per study: the latest creation, start or end of one of its trials, and the
        latest lease end of an ACTIVE one (0.0 where there is none)."""

    # -- trials -------------------------------------------------------------------------
    def find_study_trial(
        self, name: str, trial_id: int, now: float, *, for_update: bool = False
    ) -> tuple[StudyRecord, Trial, bool] | None:
        """The study, its trial (locked for this transaction when `for_update`) and
        whether any lease of the study expired before `now`, in one read; None when
        either does not exist. Workers' reports and heartbeats need exactly this."""

    def get_trial(
        self, study: StudyRecord, trial_id: int, *, for_update: bool = False
    ) -> Trial | None:
        """The trial, without its reports (locked when `for_update`); None if absent."""

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
        """The study's trials by id, without their reports, filtered by every argument
        given (the filters combine with AND).

        Args:
            study: the study.
            states: keep trials in one of these states (empty: every state).
            worker_id: keep trials held (or last held) by this worker.
            after_id: keep ids above this one (a page's start).
            ids: keep these ids (empty: none).
            lease_before: keep trials whose lease ends before this time.
            request_id: keep the trial an AddTrial with this request id made.
            changed_since: keep those that may have changed at or after this time: every
                REQUESTED or ACTIVE trial, and those created, started or ended since.
            limit: at most this many, the lowest ids first.
        """

    def has_expired_leases(self, study: StudyRecord, now: float) -> bool:
        """Whether an ACTIVE trial of the study has a lease that ended before `now`."""

    def add_trials(self, study: StudyRecord, trials: Sequence[Trial]) -> list[Trial]:
        """Stores new trials under the next free ids (1, 2, ... per study, in order);
        returns them with their ids. Call under `lock_study`."""

    def save_trial(self, study: StudyRecord, before: Trial, after: Trial) -> None:
        """Writes what changed from `before` (as loaded) to `after` (as a rule made it)."""

    def final_results(
        self, study: StudyRecord, states: Iterable[TrialState]
    ) -> list[tuple[int, TrialState, dict[str, float]]]:
        """(id, state, final metrics) of the trials in `states` that have final metrics."""

    def best_by_metric(
        self,
        study: StudyRecord,
        states: Iterable[TrialState],
        metric: str,
        *,
        maximize: bool,
        count: int,
    ) -> list[int]:
        """Ids of the `count` trials in `states` with the best final `metric` (ties: the
        older first)."""

    # -- measurements -------------------------------------------------------------------
    def measurements(
        self, study: StudyRecord, trial_ids: Sequence[int]
    ) -> dict[int, list[Measurement]]:
        """Reports by trial id, by step."""

    def get_measurement(self, study: StudyRecord, trial_id: int, step: int) -> Measurement | None:
        """The trial's report at `step`; None when there is none."""

    def add_measurement(
        self,
        study: StudyRecord,
        trial_id: int,
        measurement: Measurement,
        value: float | None,
        *,
        renew_lease_to: float | None = None,
    ) -> bool:
        """Stores a report unless its step exists.

        Args:
            study: the trial's study.
            trial_id: the trial reported on.
            measurement: the report, stamped with the server's time.
            value: its primary metric's value (None: absent), kept apart from the others
                for early stopping's reductions and `report_values`.
            renew_lease_to: when given, the trial's lease is renewed to this time too,
                whether or not the step was new.

        Returns:
            Whether the report was stored (False: its step had been reported already).
        """

    def delete_measurements(self, study: StudyRecord, trial_id: int) -> None:
        """Deletes the trial's reports (a released trial starts afresh)."""

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
        """The reported values of `metrics`, a page at a time (what ListStudyChanges
        sends as curves).

        Args:
            study: the study.
            metrics: the metrics to read; `metrics[0]` must be the study's primary metric
                (every report keeps its value apart, see `add_measurement`).
            since: keep reports recorded at or after this time.
            after: keep reports after this (trial id, step), exclusive: a page's start.
            last_id: keep reports of trials up to this id.
            limit: at most this many rows.

        Returns:
            Rows (trial id, step, the value of each of `metrics`, None where a report
            lacks one), by trial and step.
        """

    def peer_values(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> list[float]:
        """What an early-stopping rule reads of the other trials, one number per trial.

        Args:
            study: the study.
            query: which trials and which number of each (see `PeerQuery`).
            metric: the metric reduced (the study's primary one).
            exclude: the id of the trial being decided on, left out.

        Returns:
            `query`'s number for each other trial that has one, in no particular order.
        """

    def peer_median(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> tuple[int, float | None]:
        """How many `peer_values` there are, and their median (None when none),
        computed by the database; the arguments are `peer_values`'."""


class Storage(Protocol):
    """A database: runs units of work, each in one transaction."""

    url: str

    @property
    def single_writer(self) -> bool:
        """True when one transaction at a time writes the whole database (SQLite)."""

    def run(
        self, fn: Callable[[StudyStore], T], *, attempts: int = 8, read_only: bool = False
    ) -> T:
        """Runs fn in one transaction: commits when it returns, rolls back when it raises,
        retries it on transient conflicts. A `read_only` unit must not write (fn raises
        NeedsWrite instead).

        Raises:
            StorageUnavailable: the database cannot be reached or stays locked.
        """

    def keep_connection_on_this_thread(self) -> None:
        """Write transactions on this thread reuse one connection (threads that run many
        short transactions one after another)."""

    def dispose(self) -> None: ...
