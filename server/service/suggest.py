"""SuggestTrials: one unit of work that answers one or more workers' asks of a study
(`Suggestions.answer`), and the two strategies that drive it, one per kind of database:

- `OptimisticSuggest` (SQLite, one writer for the whole file): the algorithm (a GP fit is
  long next to a transaction) runs between two transactions, not inside one, so reports
  and other studies never wait for it. The first transaction returns the
  algorithm's inputs (a `SuggestPlan`); the second commits the computed suggestions if
  the study has created no trial in between, else goes round again; after a few rounds
  the algorithm runs inside the transaction, which always commits.
- `CombiningSuggest` (PostgreSQL, a per-study advisory lock): the algorithm runs inside
  the transaction, and asks that arrive meanwhile are answered together by the next one
  (`SuggestCombiner`).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from tunewire.server.algorithms import Observation, SuggestRequest, get_algorithm
from tunewire.server.algorithms.base import Algorithm, Curve
from tunewire.server.domain import lifecycle
from tunewire.server.domain.limits import MAX_SUGGEST_COUNT
from tunewire.server.domain.space import Params
from tunewire.server.domain.study import (
    FINISHED_STATES,
    RESULT_STATES,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)
from tunewire.server.service.access import StudyAccess
from tunewire.server.service.combining import SuggestCombiner
from tunewire.server.service.placement import CallPlacement
from tunewire.server.storage.base import StudyRecord, StudyStore

# A worker told to wait polls again after this long (seconds).
RETRY_AFTER_S = 1.0
# SQLite: computed-then-committed rounds before the algorithm runs inside the transaction.
SUGGEST_OPTIMISTIC_ROUNDS = 3
# SQLite: suggestions of one study are serialised by one of this many locks per process.
SUGGEST_STRIPES = 64
# Studies whose batch limit `Suggestions.combine_limit` remembers.
COMBINE_LIMIT_HINTS = 10_000


@dataclass(frozen=True)
class SuggestAsk:
    """One worker's request for trials."""

    worker_id: str
    count: int


@dataclass(frozen=True)
class SuggestResult:
    """The trials a worker gets; `study_done` when it will never get more; otherwise how
    long to wait before asking again when it got none."""

    trials: list[Trial] = field(default_factory=list)
    study_done: bool = False
    retry_after_seconds: float = 0.0


@dataclass(frozen=True)
class SuggestPlan:
    """An algorithm's inputs read in one transaction and, once computed outside it, its
    suggestions; valid while the study has still created `created` trials."""

    request: SuggestRequest
    created: int
    suggestions: list[Params] = field(default_factory=list)


class Suggestions:
    """A suggestion as units of work, and the algorithm run between them."""

    def __init__(self, access: StudyAccess) -> None:
        self.access = access
        self.storage = access.storage
        # How many trials concurrent asks of a study may share one transaction for,
        # learnt from its algorithm at its last suggestion (a hint: unknown or stale, it
        # only changes how requests are grouped).
        self._combine_limits: dict[str, int] = {}

    def combine_limit(self, name: str) -> int:
        """How many trials concurrent requests for a study may ask for together (1 until
        its first suggestion, and for the GP)."""
        return self._combine_limits.get(name, 1)

    def answer(
        self,
        name: str,
        asks: Sequence[SuggestAsk],
        plan: SuggestPlan | None = None,
        *,
        defer: bool = False,
    ) -> list[SuggestResult] | SuggestPlan:
        """One transaction that answers `asks` in order. With `defer`, a history-based
        algorithm is not run inside it: the transaction returns its inputs unless `plan`
        already holds suggestions computed from the study as it still is."""
        return self.storage.run(
            functools.partial(self._answer, name=name, asks=asks, plan=plan, defer=defer)
        )

    def answer_all(self, name: str, asks: Sequence[SuggestAsk]) -> list[SuggestResult]:
        """`answer` with the algorithm inside the transaction: always makes progress."""
        results = self.answer(name, asks)
        assert isinstance(results, list)
        return results

    @staticmethod
    def compute(plan: SuggestPlan) -> SuggestPlan:
        """Runs the algorithm on a plan's inputs; touches no database."""
        request = plan.request
        suggestions = get_algorithm(request.spec.algorithm).suggest(request)
        # Algorithms are trusted but checked: an invalid configuration never reaches a worker.
        valid = [request.spec.space.validate(p) for p in suggestions[: request.count]]
        return replace(plan, suggestions=valid)

    def _answer(
        self,
        store: StudyStore,
        name: str,
        asks: Sequence[SuggestAsk],
        plan: SuggestPlan | None,
        defer: bool,
    ) -> list[SuggestResult] | SuggestPlan:
        study = self.access.study(store, name)
        spec = self.access.spec(study)
        algorithm = get_algorithm(spec.algorithm)
        if len(self._combine_limits) >= COMBINE_LIMIT_HINTS:
            self._combine_limits.clear()
        self._combine_limits[name] = MAX_SUGGEST_COUNT if algorithm.combine_asks else 1
        now = self.access.clock()
        store.lock_study(study)
        self.access.expire_leases(store, study, spec, now)
        # A worker asking again gets the trials it holds first (their leases renewed).
        lease = spec.lease_end(now)
        got: list[list[Trial]] = []
        for held in _held(store, study, asks):
            got.append([lifecycle.renew(t, lease) for t in held])
            for before, after in zip(held, got[-1], strict=True):
                store.save_trial(study, before, after)
        if study.state is not StudyState.ACTIVE:  # stopped or completed
            return [SuggestResult(trials, not trials) for trials in got]
        wants = [max(0, ask.count - len(trials)) for ask, trials in zip(asks, got, strict=True)]
        tally = store.tally(study)
        wants = lifecycle.share_out(wants, lifecycle.new_trial_room(spec, tally, sum(wants)))
        total = sum(wants)
        queued = store.trials(study, states=(TrialState.REQUESTED,), limit=total) if total else []
        suggested: list[Params] = []
        need = total - len(queued)
        if need > 0:
            if plan is not None and plan.created == tally.created and plan.request.count >= need:
                suggested = plan.suggestions[:need]
            else:
                fresh_plan = _plan(store, study, spec, need, algorithm, tally.created)
                if defer and algorithm.uses_history:
                    return fresh_plan
                suggested = self.compute(fresh_plan).suggestions
        waiting, fresh = iter(queued), iter(suggested)
        new: list[tuple[int, Trial]] = []  # (ask, trial) of the trials to store
        for i, (ask, trials, want) in enumerate(zip(asks, got, wants, strict=True)):
            for _ in range(want):
                trial = next(waiting, None)
                if trial is not None:
                    running = lifecycle.start(trial, ask.worker_id, now, lease)
                    store.save_trial(study, trial, running)
                    trials.append(running)
                    continue
                params = next(fresh, None)
                if params is None:
                    break
                trial = lifecycle.new_trial(params, TrialSource.ALGORITHM, now)
                new.append((i, lifecycle.start(trial, ask.worker_id, now, lease)))
        stored = store.add_trials(study, [t for _, t in new])
        for (i, _), trial in zip(new, stored, strict=True):
            got[i].append(trial)
        return self._results(store, study, spec, got, wants)

    def _results(
        self,
        store: StudyStore,
        study: StudyRecord,
        spec: StudySpec,
        got: list[list[Trial]],
        wants: list[int],
    ) -> list[SuggestResult]:
        """Each ask's answer. One left empty-handed learns whether the study is done:
        decided once per transaction, as the answer is the study's."""
        no_room_done: bool | None = None  # the budget is used or the concurrency cap reached
        exhausted_done: bool | None = None  # the algorithm has nothing more (a finished grid)
        results = []
        for trials, want in zip(got, wants, strict=True):
            if trials:
                results.append(SuggestResult(trials, False))
                continue
            if want <= 0:
                if no_room_done is None:
                    no_room_done = self.access.complete_if_done(store, study, spec)
                done = no_room_done
            else:
                if exhausted_done is None:
                    running = store.trials(study, states=(TrialState.ACTIVE,), limit=1)
                    exhausted_done = not running
                    if exhausted_done:
                        store.set_study_state(study, StudyState.COMPLETED)
                done = exhausted_done
            results.append(SuggestResult([], done, 0.0 if done else RETRY_AFTER_S))
        return results


def _held(store: StudyStore, study: StudyRecord, asks: Sequence[SuggestAsk]) -> list[list[Trial]]:
    """The ACTIVE trials each asking worker holds."""
    if len(asks) == 1:
        worker = asks[0].worker_id
        return [store.trials(study, states=(TrialState.ACTIVE,), worker_id=worker)]
    by_worker: dict[str, list[Trial]] = {}
    for t in store.trials(study, states=(TrialState.ACTIVE,)):
        by_worker.setdefault(t.worker_id, []).append(t)
    return [by_worker.get(ask.worker_id, []) for ask in asks]


def _plan(
    store: StudyStore,
    study: StudyRecord,
    spec: StudySpec,
    count: int,
    algorithm: Algorithm,
    created: int,
) -> SuggestPlan:
    """The algorithm's inputs: the finished and lost trials, and the pending ones."""
    if not algorithm.uses_history:
        return SuggestPlan(SuggestRequest(spec, [], [], count, created), created)
    everything = store.trials(study)
    curves = _curves(store, study, spec, everything) if algorithm.uses_curves else {}
    observations = [
        Observation(
            t.id,
            t.parameters,
            t.state,
            t.final_metrics if t.state in RESULT_STATES else None,
            curves.get(t.id, ()),
        )
        for t in everything
        if t.state in FINISHED_STATES or t.state is TrialState.LOST
    ]
    running = [t for t in everything if t.state in (TrialState.ACTIVE, TrialState.REQUESTED)]
    request = SuggestRequest(
        spec,
        observations,
        [t.parameters for t in running],
        count,
        created,
        [curves.get(t.id, ()) for t in running] if curves else (),
    )
    return SuggestPlan(request, created)


def _curves(
    store: StudyStore, study: StudyRecord, spec: StudySpec, trials: Sequence[Trial]
) -> dict[int, Curve]:
    """The primary metric's reports of the trials that have results or are running."""
    ids = [t.id for t in trials if t.state in RESULT_STATES or t.state is TrialState.ACTIVE]
    metric = spec.metrics[0].name
    out: dict[int, Curve] = {}
    for trial_id, reports in store.measurements(study, ids).items():
        points = [
            (m.step, float(m.metrics[metric]))
            for m in reports
            if metric in m.metrics and math.isfinite(float(m.metrics[metric]))
        ]
        if points:
            out[trial_id] = tuple(sorted(points))
    return out


# -- the strategies ---------------------------------------------------------------------------
class SuggestStrategy(Protocol):
    """How SuggestTrials is driven for one kind of database (the composition root picks)."""

    async def suggest(self, name: str, ask: SuggestAsk) -> SuggestResult:
        """Answers one worker's ask of the study.

        Args:
            name: the study.
            ask: the worker and how many trials it wants (already checked).

        Returns:
            The trials the worker now holds; or none, with `study_done` or how long to
            wait before asking again.

        Raises:
            StudyNotFound, StoredSpecInvalid, StorageUnavailable.
        """
        ...


class OptimisticSuggest:
    """SQLite: optimistic rounds of short transactions around the algorithm (module doc).
    Suggestions of one study are serialised in this process by a lock; another process
    creating a trial in between sends a round round again."""

    def __init__(self, suggestions: Suggestions, calls: CallPlacement) -> None:
        self.suggestions = suggestions
        self.calls = calls
        self._locks = [asyncio.Lock() for _ in range(SUGGEST_STRIPES)]

    async def suggest(self, name: str, ask: SuggestAsk) -> SuggestResult:
        """`SuggestStrategy.suggest` in up to SUGGEST_OPTIMISTIC_ROUNDS computed-then-
        committed rounds, then once with the algorithm inside the transaction."""
        answer, compute = self.suggestions.answer, self.suggestions.compute
        async with self._locks[hash(name) % SUGGEST_STRIPES]:
            plan: SuggestPlan | None = None
            for _ in range(SUGGEST_OPTIMISTIC_ROUNDS):
                result = await self.calls.run(
                    functools.partial(answer, name, [ask], plan, defer=True), light=True
                )
                if not isinstance(result, SuggestPlan):
                    return result[0]
                plan = await self.calls.run(functools.partial(compute, result), light=False)
            final = await self.calls.run(
                functools.partial(self.suggestions.answer_all, name, [ask]), light=False
            )
            return final[0]


class InFlightSuggestions:
    """One answer per ask: an ask that arrives while the same worker's same ask is being
    answered (a client that gave up waiting and retried) waits for that answer instead of
    computing another. The answer is computed to its end even when its asker is gone, so
    the trial it hands out is held by the worker, and any later ask gets it back."""

    def __init__(self, inner: SuggestStrategy) -> None:
        self.inner = inner
        self._running: dict[tuple[str, str, int], asyncio.Task[SuggestResult]] = {}

    async def suggest(self, name: str, ask: SuggestAsk) -> SuggestResult:
        """`SuggestStrategy.suggest` of the inner strategy, or the answer in flight for
        the same study, worker and count."""
        key = (name, ask.worker_id, ask.count)
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self.inner.suggest(name, ask))
            self._running[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[str, str, int], task: asyncio.Task[SuggestResult]) -> None:
        self._running.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too: every asker may have gone


class CombiningSuggest:
    """PostgreSQL: concurrent asks of a study answered together (module doc)."""

    def __init__(self, suggestions: Suggestions, calls: CallPlacement) -> None:
        self.calls = calls
        self._combiner: SuggestCombiner[SuggestAsk, SuggestResult] = SuggestCombiner(
            suggestions.answer_all, suggestions.combine_limit
        )

    async def suggest(self, name: str, ask: SuggestAsk) -> SuggestResult:
        """`SuggestStrategy.suggest`, answered in one transaction with the study's other
        asks waiting then (`SuggestCombiner.submit`)."""
        return await self.calls.run(
            functools.partial(self._combiner.submit, name, ask), light=False
        )
