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
    def find_study(self, name: str) -> StudyRecord | None: ...

    def lock_study(self, study: StudyRecord) -> None:
        """Serialises structural changes of the study (new trials, retries, its state)
        with every other transaction, on every replica, until this one ends."""

    def add_study(
        self, name: str, spec_json: str, state: StudyState, now: float
    ) -> StudyRecord | None:
        """The new study; None when the name is taken (a concurrent create)."""

    def list_studies(self, after_name: str, limit: int) -> list[StudyRecord]:
        """Studies by name, after `after_name`."""

    def delete_study(self, study: StudyRecord) -> None: ...

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
    ) -> Trial | None: ...

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
        """The study's trials by id, filtered by every argument given. `changed_since`
        keeps those that may have changed at or after that time: every REQUESTED or
        ACTIVE trial, and those created, started or ended since."""

    def has_expired_leases(self, study: StudyRecord, now: float) -> bool: ...

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

    def get_measurement(
        self, study: StudyRecord, trial_id: int, step: int
    ) -> Measurement | None: ...

    def add_measurement(
        self,
        study: StudyRecord,
        trial_id: int,
        measurement: Measurement,
        value: float | None,
        *,
        renew_lease_to: float | None = None,
    ) -> bool:
        """Stores a report unless its step exists; returns whether it did. `value` is its
        primary metric (what early stopping reduces); with `renew_lease_to` the trial's
        lease is renewed too, whether or not the step was new."""

    def delete_measurements(self, study: StudyRecord, trial_id: int) -> None: ...

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
        """Rows (trial id, step, the values of `metrics`..., None where a report lacks
        one) of the
        reports recorded at or after `since`, after the (trial id, step) `after`, on trials
        up to `last_id`, by trial and step; at most `limit`. `metrics[0]` must be the
        study's primary metric (every report keeps its value apart, see
        `add_measurement`)."""

    def peer_values(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> list[float]:
        """`query`'s number (see PeerQuery) for each other trial that has one."""

    def peer_median(
        self, study: StudyRecord, query: PeerQuery, *, metric: str, exclude: int
    ) -> tuple[int, float | None]:
        """How many `peer_values` there are, and their median (None when none)."""


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
