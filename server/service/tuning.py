"""The service as the API sees it: one awaited call per RPC. Each runs one unit of work of
the study, trial or suggestion services where the composition root placed it (see
placement.py), so the gRPC layer knows nothing of the database behind it."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from tunewire.server.domain.early_stopping import StopDecision
from tunewire.server.domain.limits import check_suggest_count, check_worker_id
from tunewire.server.domain.study import (
    Measurement,
    Study,
    StudySpec,
    StudyState,
    Trial,
    TrialState,
)
from tunewire.server.service.changes import ChangeCursor, StudyChanges
from tunewire.server.service.placement import CallPlacement
from tunewire.server.service.studies import StudyService
from tunewire.server.service.suggest import SuggestAsk, SuggestResult, SuggestStrategy
from tunewire.server.service.trials import TrialService


class TuningService:
    """Every call of the API, awaited. Each method runs one call of the study, trial or
    suggestion services (whose docstrings say what it raises) where `calls` places it;
    any call may also raise StorageUnavailable (the database cannot be reached).

    Args:
        studies: the calls on studies.
        trials: the calls on trials.
        suggest: how SuggestTrials is driven for this database.
        calls: where a unit of work runs (the event loop or the thread pool).
    """

    def __init__(
        self,
        studies: StudyService,
        trials: TrialService,
        suggest: SuggestStrategy,
        calls: CallPlacement,
    ) -> None:
        self.studies = studies
        self.trials = trials
        self.suggest = suggest
        self.calls = calls

    # -- studies --------------------------------------------------------------------------
    async def create_study(self, name: str, spec: StudySpec) -> tuple[Study, bool]:
        """The study, created unless it exists, and whether it was (`StudyService.create`)."""
        return await self.calls.run(functools.partial(self.studies.create, name, spec), light=False)

    async def get_study(self, name: str) -> Study:
        """The study with its trial counts."""
        return await self.calls.run(functools.partial(self.studies.get, name), light=True)

    async def list_studies(self, size: int, after_name: str) -> tuple[list[Study], str | None]:
        """A page of studies by name and the last name when there are more
        (`StudyService.page`)."""
        return await self.calls.run(
            functools.partial(self.studies.page, size, after_name), light=False
        )

    async def delete_study(self, name: str) -> None:
        """Deletes the study with its trials."""
        await self.calls.run(functools.partial(self.studies.delete, name), light=False)

    async def set_study_state(self, name: str, state: StudyState) -> Study:
        """Stops or resumes the study (`StudyService.set_state`)."""
        return await self.calls.run(
            functools.partial(self.studies.set_state, name, state), light=False
        )

    async def trial_counts(self) -> list[tuple[str, dict[TrialState, int]]]:
        """Trials per state of every study, for a metrics scrape."""
        return await self.calls.run(self.studies.trial_counts, light=False)

    async def study_changes(self, name: str, cursor: ChangeCursor, size: int) -> StudyChanges:
        """What changed in the study since `cursor`, up to `size` trials."""
        return await self.calls.run(
            functools.partial(self.studies.changes, name, cursor, size), light=False
        )

    # -- trials ---------------------------------------------------------------------------
    async def suggest_trials(self, name: str, count: int, worker_id: str) -> SuggestResult:
        """Up to `count` trials for the worker: those it holds first, then queued ones,
        then new ones from the study's algorithm.

        Args:
            count: how many trials the worker asks for (0 means 1).
            worker_id: the asking worker; it holds the trials it gets.

        Returns:
            The trials; or none, with `study_done` or how long to wait before asking again.

        Raises:
            InvalidArgument: a bad worker id or count.
            StudyNotFound: no such study.
            StoredSpecInvalid: the study's stored spec is refused by this server.
        """
        check_worker_id(worker_id)
        ask = SuggestAsk(worker_id, check_suggest_count(count))
        return await self.suggest.suggest(name, ask)

    async def report(
        self,
        name: str,
        trial_id: int,
        worker_id: str,
        measurement: Measurement,
        *,
        last_step: bool = False,
    ) -> tuple[StopDecision | None, Trial]:
        """Records the holder's report; the stop decision (None: go on) and the trial
        (`TrialService.report`)."""
        # A report on a study whose rule reads the other trials reduces their reports in
        # SQL, which grows with the study: not on the event loop.
        light = not self.trials.stopping.reads_peers(name)
        return await self.calls.run(
            functools.partial(
                self.trials.report, name, trial_id, worker_id, measurement, last_step=last_step
            ),
            light=light,
        )

    async def heartbeat(self, name: str, trial_id: int, worker_id: str) -> tuple[bool, Trial]:
        """Renews the holder's lease; whether the trial should stop, and the trial."""
        return await self.calls.run(
            functools.partial(self.trials.heartbeat, name, trial_id, worker_id), light=True
        )

    async def complete_trial(
        self,
        name: str,
        trial_id: int,
        worker_id: str,
        final: Measurement | None,
        infeasible_reason: str = "",
    ) -> Trial:
        """Finishes the holder's trial (`TrialService.complete`)."""
        return await self.calls.run(
            functools.partial(
                self.trials.complete, name, trial_id, worker_id, final, infeasible_reason
            ),
            light=True,
        )

    async def fail_trial(self, name: str, trial_id: int, worker_id: str, reason: str) -> Trial:
        """Marks the holder's trial FAILED with `reason`."""
        return await self.calls.run(
            functools.partial(self.trials.fail, name, trial_id, worker_id, reason), light=True
        )

    async def release_trial(self, name: str, trial_id: int, worker_id: str) -> Trial:
        """Hands the holder's trial back to the queue, unfinished."""
        return await self.calls.run(
            functools.partial(self.trials.release, name, trial_id, worker_id), light=True
        )

    async def add_trial(
        self,
        name: str,
        params: Mapping[str, Any],
        final: Measurement | None,
        request_id: str = "",
    ) -> Trial:
        """Queues a configuration, or records a known result (`TrialService.add`)."""
        return await self.calls.run(
            functools.partial(self.trials.add, name, params, final, request_id), light=False
        )

    async def get_trial(self, name: str, trial_id: int) -> Trial:
        """The trial with its reports."""
        return await self.calls.run(functools.partial(self.trials.get, name, trial_id), light=True)

    async def list_trials(
        self,
        name: str,
        states: Sequence[TrialState],
        size: int,
        after_id: int,
        with_measurements: bool = True,
    ) -> tuple[list[Trial], int | None]:
        """A page of trials by id and the last id when there are more
        (`TrialService.page`)."""
        return await self.calls.run(
            functools.partial(self.trials.page, name, states, size, after_id, with_measurements),
            light=False,
        )

    async def optimal_trials(self, name: str, count: int) -> list[Trial]:
        """The `count` best trials, or the Pareto front of several metrics."""
        return await self.calls.run(
            functools.partial(self.trials.optimal, name, count), light=False
        )
