"""The tuning service's domain logic: one method per RPC, each one database transaction.

Plain Python: no gRPC here. The trial state machine:

    REQUESTED --suggest--> ACTIVE --complete--> COMPLETED | STOPPED_EARLY | INFEASIBLE
        ^                    |  \\--fail-----> FAILED
        |                    |   \\--lease expires--> LOST --(retry budget)--> new REQUESTED trial
        \\----release--------/
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tunewire.server.algorithms import Observation, SuggestRequest, get_algorithm
from tunewire.server.algorithms.pareto import pareto_front
from tunewire.server.early_stopping import (
    PEER_RULES,
    PeerQuery,
    decide_from_values,
    median_decision,
    peers_needed,
)
from tunewire.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from tunewire.server.space import Params, check_name
from tunewire.server.storage.sql import NeedsWrite, Repository, Storage, StudyRow, trial_row
from tunewire.server.study import (
    FINISHED_STATES,
    RESULT_STATES,
    Goal,
    Measurement,
    StopDecision,
    Study,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)

T = TypeVar("T")
# What a stop decision reads of the other trials: the median rule's (count, median), or
# one number per trial (successive halving).
PeerNumbers = list[float] | tuple[int, float | None]
log = logging.getLogger(__name__)

MAX_SUGGEST_COUNT = 100
MAX_PAGE_SIZE = 1000
MAX_WORKER_ID_LENGTH = 256
MAX_REASON_LENGTH = 4096
MAX_METRICS_PER_REPORT = 256
# A worker told to wait polls again after this long (seconds).
RETRY_AFTER_S = 1.0
# SQLite: computed-then-committed suggestion rounds before the algorithm runs inside the
# write transaction (which always commits).
SUGGEST_OPTIMISTIC_ROUNDS = 3


@dataclass(frozen=True)
class SuggestPlan:
    """An algorithm's inputs read in one transaction and, once computed outside it, its
    suggestions; valid while the study's largest trial id is still `max_trial_id`."""

    request: SuggestRequest
    max_trial_id: int
    suggestions: list[Params] = field(default_factory=list)


def check_suggest_args(count: int, worker_id: str) -> int:
    """Validates a suggest request; returns the count to use (0 means 1)."""
    _check_worker(worker_id)
    if count < 0 or count > MAX_SUGGEST_COUNT:
        raise InvalidArgument(f"count must be between 1 and {MAX_SUGGEST_COUNT}, got {count}")
    return count or 1


SUGGEST_STRIPES = 64


def suggest_stripe(name: str) -> int:
    """Which of SUGGEST_STRIPES locks serialises a study's suggestions in one process."""
    return hash(name) % SUGGEST_STRIPES


@dataclass(frozen=True)
class SuggestAsk:
    """One worker's request for trials."""

    worker_id: str
    count: int


class SuggestCombiner:
    """Answers concurrent suggestion requests for one study in this process together.

    On PostgreSQL a study's suggestions are serialised by its advisory lock for a whole
    transaction (about ten statements), so under load workers queued for it one by one
    and suggestions, not the server's CPU, set the pace. Here the first request for a
    study becomes the leader and runs one transaction for every request queued by then
    (`run(name, asks)`, answered in arrival order, one algorithm call for all); requests
    arriving meanwhile wait, and the leader hands the lead to the first of them when it
    is done (flat combining). A worker's second request never shares a transaction with
    its first, so it sees the trial the first one got, exactly as if serialised. A batch
    asks for at most `limit(name)` trials: 1 for an algorithm whose batches cost more than
    single suggestions (the GP), where requests are answered one at a time as before.
    """

    def __init__(
        self,
        run: Callable[[str, Sequence[SuggestAsk]], list[SuggestResult]],
        limit: Callable[[str], int] = lambda name: MAX_SUGGEST_COUNT,
    ) -> None:
        """`run(name, asks)` answers asks in one transaction; `limit(name)` is the most
        trials one batch of that study may ask for (1: one request at a time)."""
        self._run = run
        self._limit = limit
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Waiter]] = {}

    def submit(self, name: str, ask: SuggestAsk) -> SuggestResult:
        me = _Waiter(ask)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                self._queues[name] = []  # no one queued and no leader: lead
                me.lead = True
            else:
                queue.append(me)
        if not me.lead:
            me.event.wait()
            if not me.lead:
                return me.answer()
        self._serve(name, me)
        return me.answer()

    def _serve(self, name: str, me: _Waiter) -> None:
        """As leader: one batch (this request and those queued), then pass the lead on."""
        with self._lock:
            queue = self._queues[name]
            batch, rest, workers, total = [me], [], {me.ask.worker_id}, me.ask.count
            limit = self._limit(name)
            for w in queue:
                if w.ask.worker_id in workers or total + w.ask.count > limit:
                    rest.append(w)
                else:
                    batch.append(w)
                    workers.add(w.ask.worker_id)
                    total += w.ask.count
            queue[:] = rest
        try:
            results = self._run(name, [w.ask for w in batch])
            for w, result in zip(batch, results, strict=True):
                w.result = result
        except BaseException as exc:  # every request of the batch gets the study's error
            for w in batch:
                w.error = exc
        with self._lock:
            queue = self._queues[name]
            if queue:
                heir = queue.pop(0)
                heir.lead = True
                heir.event.set()
            else:
                del self._queues[name]
        for w in batch:
            if w is not me:
                w.event.set()


class _Waiter:
    def __init__(self, ask: SuggestAsk) -> None:
        self.ask = ask
        self.event = threading.Event()
        self.lead = False
        self.result: SuggestResult | None = None
        self.error: BaseException | None = None

    def answer(self) -> SuggestResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(frozen=True)
class SuggestResult:
    trials: list[Trial]
    study_done: bool
    retry_after_seconds: float = 0.0


def _loss(goal: Goal, value: float) -> float:
    """The value in "smaller is better" form."""
    return value if goal is Goal.MINIMIZE else -value


def _check_worker(worker_id: str) -> None:
    if not worker_id:
        raise InvalidArgument(
            "worker_id is required: give a stable id of the worker, e.g. host:gpu0"
        )
    if len(worker_id) > MAX_WORKER_ID_LENGTH:
        raise InvalidArgument(f"worker_id is longer than {MAX_WORKER_ID_LENGTH} characters")


def _check_metrics(metrics: Mapping[str, float], *, what: str) -> None:
    if len(metrics) > MAX_METRICS_PER_REPORT:
        raise InvalidArgument(f"{what}: at most {MAX_METRICS_PER_REPORT} metrics")
    for name in metrics:
        check_name("metric", name)


def _page_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _from_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not one this server issued") from None


class TuningService:
    """One method per RPC. Stateless: everything lives in `storage`; the spec cache only
    saves re-parsing JSON and is keyed by the stored text itself."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock
        self._spec_cache: dict[str, StudySpec] = {}
        # SQLite only: serialises one process's suggestions per study (striped by name).
        self._suggest_locks = [threading.Lock() for _ in range(SUGGEST_STRIPES)]
        # PostgreSQL only: concurrent suggestions for a study share one transaction, up to
        # a batch size learnt from the study's algorithm by its last suggestion (a hint:
        # unknown or stale, it only changes how requests are grouped).
        self._combine_limits: dict[str, int] = {}
        # Studies whose early-stopping rule reads other trials (median, successive
        # halving), learnt from their reports: a hint for where a report runs, never
        # needed for its correctness.
        self._peer_rules: dict[str, bool] = {}
        self._combiner = SuggestCombiner(self.suggest_together, self.combine_limit)

    # -- helpers ----------------------------------------------------------------------
    def _spec(self, row: StudyRow) -> StudySpec:
        spec = self._spec_cache.get(row.spec_json)
        if spec is None:
            spec = StudySpec.from_json(row.spec_json)
            if len(self._spec_cache) > 1024:
                self._spec_cache.clear()
            self._spec_cache[row.spec_json] = spec
        return spec

    @staticmethod
    def _study_row(repo: Repository, name: str) -> StudyRow:
        row = repo.find_study(name)
        if row is None:
            raise NotFound(f"study {name!r} not found")
        return row

    def _study(self, repo: Repository, row: StudyRow) -> Study:
        counts = repo.trial_counts([row.id])[row.id]
        return Study(row.name, self._spec(row), StudyState(row.state), row.created_at, counts)

    def _expire_leases(self, repo: Repository, row: StudyRow, spec: StudySpec, now: float) -> None:
        """Marks trials whose lease expired LOST and re-enqueues their configurations."""
        if not repo.has_expired_leases(row.id, now):
            return
        if repo.read_only:
            raise NeedsWrite
        repo.lock_study(row.id)
        lost = repo.mark_expired_lost(row.id, now)
        retries = [t for t in lost if t.attempt < spec.max_trial_retries]
        if not retries:
            return
        first = repo.allocate_trial_ids(row.id, len(retries))
        repo.insert_trials(
            row.id,
            [
                trial_row(
                    first + i,
                    t.parameters,
                    TrialState.REQUESTED,
                    TrialSource.RETRY,
                    now,
                    retry_of=t.id,
                    attempt=t.attempt + 1,
                )
                for i, t in enumerate(retries)
            ],
        )
        for i, t in enumerate(retries):
            log.info("study %s: trial %d lost, re-offered as trial %d", row.name, t.id, first + i)

    def _read(self, op: Callable[[Repository], T]) -> T:
        """A call that only reads, as a read-only transaction; again as a write transaction
        if it finds leases to expire first (rare: their next call does it otherwise)."""
        try:
            return self.storage.run(op, read_only=True)
        except NeedsWrite:
            return self.storage.run(op)

    def _touch_study(self, repo: Repository, name: str) -> tuple[StudyRow, StudySpec, float]:
        """The study, its spec and the time, after marking its expired leases lost: every
        call that touches a study does this first (no background thread needed)."""
        row = self._study_row(repo, name)
        spec = self._spec(row)
        now = self.clock()
        self._expire_leases(repo, row, spec, now)
        return row, spec, now

    def _touch_trial(
        self, repo: Repository, name: str, trial_id: int, *, for_update: bool
    ) -> tuple[StudyRow, StudySpec, Trial | None, float]:
        """`_touch_study` plus the trial (None when the study has no such trial), in one
        query when no lease of the study has expired: the common case of reports and
        heartbeats, which every worker sends many times per trial."""
        now = self.clock()
        found = repo.find_study_trial(name, trial_id, now, for_update=for_update)
        if found is not None and not found[2]:
            row, trial, _ = found
            return row, self._spec(row), trial, now
        # Leases to expire first, or no such study or trial: the general path.
        row, spec, now = self._touch_study(repo, name)
        return row, spec, repo.get_trial(row.id, trial_id, for_update=for_update), now

    @staticmethod
    def _found(row: StudyRow, trial: Trial | None, trial_id: int) -> Trial:
        if trial is None:
            raise NotFound(f"trial {trial_id} not found in study {row.name!r}")
        trial.study_name = row.name
        return trial

    def _owned_active_trial(
        self, row: StudyRow, trial: Trial | None, trial_id: int, worker_id: str, action: str
    ) -> Trial:
        """The trial when it is ACTIVE and held by worker_id; else a precise error."""
        _check_worker(worker_id)
        trial = self._found(row, trial, trial_id)
        if trial.state is TrialState.ACTIVE:
            if trial.worker_id != worker_id:
                raise FailedPrecondition(
                    f"trial {trial_id} is held by worker {trial.worker_id!r}, not {worker_id!r}; "
                    f"only its holder may {action} it"
                )
            return trial
        if trial.state is TrialState.LOST:
            raise FailedPrecondition(
                f"trial {trial_id} was lost ({trial.reason}); cannot {action} it. Heartbeat or "
                "report more often than the study's lease timeout"
            )
        if trial.state is TrialState.REQUESTED:
            raise FailedPrecondition(
                f"trial {trial_id} is not held by any worker; get it from SuggestTrials first"
            )
        raise FailedPrecondition(
            f"trial {trial_id} is already {trial.state.value}; cannot {action} a finished trial"
        )

    def _renew(
        self, repo: Repository, row: StudyRow, spec: StudySpec, trial: Trial, now: float
    ) -> float:
        expires = spec.lease_end(now)
        repo.renew_lease(row.id, trial.id, expires)
        trial.lease_expires = expires
        return expires

    def _complete_study_if_done(self, repo: Repository, row: StudyRow, spec: StudySpec) -> bool:
        """Marks the study COMPLETED when its budget is used and nothing runs or waits."""
        if spec.max_trials <= 0 or row.state != StudyState.ACTIVE.value:
            return False
        if repo.count_budget_trials(row.id) < spec.max_trials:
            return False
        busy = repo.trials_where(row.id, states=(TrialState.ACTIVE, TrialState.REQUESTED), limit=1)
        if busy:
            return False
        repo.set_study_state(row.id, StudyState.COMPLETED.value)
        return True

    # -- studies ----------------------------------------------------------------------
    def create_study(self, name: str, spec: StudySpec) -> tuple[Study, bool]:
        check_name("study", name)
        spec_json = spec.to_json()

        def op(repo: Repository) -> tuple[Study, bool]:
            existing = repo.find_study(name)
            created = False
            if existing is None:
                existing = repo.insert_study(name, spec_json, StudyState.ACTIVE.value, self.clock())
                created = existing is not None
                if existing is None:  # created concurrently by another call
                    existing = self._study_row(repo, name)
            # Compared in today's canonical form, so that settings added with defaults
            # since the study was stored do not make an identical spec look different.
            if self._spec(existing).to_json() != spec_json:
                raise AlreadyExists(
                    f"study {name!r} exists with a different spec; pick another name or delete it"
                )
            return self._study(repo, existing), created

        return self.storage.run(op)

    def get_study(self, name: str) -> Study:
        def op(repo: Repository) -> Study:
            row, _, _ = self._touch_study(repo, name)
            return self._study(repo, row)

        return self._read(op)

    def list_studies(self, page_size: int, page_token: str) -> tuple[list[Study], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must be >= 0")
        size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _from_page_token(page_token)

        def op(repo: Repository) -> tuple[list[Study], str]:
            rows = repo.list_studies(after, size + 1)
            more = len(rows) > size
            rows = rows[:size]
            counts = repo.trial_counts([r.id for r in rows])
            out = [
                Study(r.name, self._spec(r), StudyState(r.state), r.created_at, counts[r.id])
                for r in rows
            ]
            return out, (_page_token(rows[-1].name) if more and rows else "")

        return self._read(op)

    def delete_study(self, name: str) -> None:
        def op(repo: Repository) -> None:
            row = self._study_row(repo, name)
            repo.lock_study(row.id)
            repo.delete_study(row.id)

        self.storage.run(op)

    def set_study_state(self, name: str, state: StudyState) -> Study:
        def op(repo: Repository) -> Study:
            row = self._study_row(repo, name)
            repo.lock_study(row.id)
            if state is StudyState.ACTIVE and row.state == StudyState.COMPLETED.value:
                raise FailedPrecondition(
                    f"study {name!r} is completed (its trial budget is used); create a new "
                    "study or add trials by hand"
                )
            if row.state != state.value and row.state != StudyState.COMPLETED.value:
                repo.set_study_state(row.id, state.value)
                row = replace(row, state=state.value)
            return self._study(repo, row)

        return self.storage.run(op)

    # -- trials -----------------------------------------------------------------------
    def suggest_trials(self, name: str, count: int, worker_id: str) -> SuggestResult:
        count = check_suggest_args(count, worker_id)
        if not self.storage.single_writer:
            # PostgreSQL: the per-study advisory lock serialises suggestions for the study
            # while reports, heartbeats and other studies go on, so the algorithm runs
            # inside the transaction. Asks that arrive while one is in progress are
            # answered together by the next transaction (see SuggestCombiner).
            return self._combiner.submit(name, SuggestAsk(worker_id, count))
        # SQLite has one writer for the whole file: the algorithm (a GP fit takes a tenth
        # of a second or more) runs between two transactions, not inside one, so reports
        # and other studies never wait for it. Suggestions for one study are serialised
        # by a lock in this process; a trial another process adds between the two
        # transactions changes the study's largest trial id and sends us round again.
        # (The gRPC server drives the same steps from its event loop.)
        with self._suggest_locks[suggest_stripe(name)]:
            steps = self.suggest_steps(name, count, worker_id)
            try:
                work = next(steps)
                while True:
                    work = steps.send(work())
            except StopIteration as done:
                return done.value

    def suggest_steps(
        self, name: str, count: int, worker_id: str
    ) -> Generator[Callable[[], Any], Any, SuggestResult]:
        """A SQLite suggestion as steps, for one caller holding the study's lock: optimistic
        rounds (each a short transaction, run here), and between them the blocking work
        (the algorithm, and at the end a transaction that runs it inside) yielded for the
        driver to run where it likes and send back: `suggest_trials` in its own thread,
        the gRPC server in its thread pool, off the event loop."""
        plan: SuggestPlan | None = None
        for _ in range(SUGGEST_OPTIMISTIC_ROUNDS):
            result = self.suggest_round(name, count, worker_id, plan)
            if isinstance(result, SuggestResult):
                return result
            plan = yield functools.partial(self.compute_plan, result)
        final: SuggestResult = yield functools.partial(self.suggest_final, name, count, worker_id)
        return final

    def suggest_round(
        self, name: str, count: int, worker_id: str, plan: SuggestPlan | None
    ) -> SuggestResult | SuggestPlan:
        """One transaction: the suggestion, unless a history-based algorithm must run
        first (then its inputs; call again with them computed by `compute_plan`)."""
        result = self.storage.run(
            functools.partial(
                self._suggest_op,
                name=name,
                asks=[SuggestAsk(worker_id, count)],
                plan=plan,
                defer=True,
            )
        )
        return result if isinstance(result, SuggestPlan) else result[0]

    def suggest_final(self, name: str, count: int, worker_id: str) -> SuggestResult:
        """One transaction that runs the algorithm inside it: always makes progress."""
        return self.suggest_together(name, [SuggestAsk(worker_id, count)])[0]

    def combine_limit(self, name: str) -> int:
        """How many trials concurrent requests for a study may ask for together: learnt from
        the study's algorithm by its last suggestion (1 until then, and for the GP)."""
        return self._combine_limits.get(name, 1)

    def suggest_together(self, name: str, asks: Sequence[SuggestAsk]) -> list[SuggestResult]:
        """Several workers' asks of one study answered in one transaction (in order), with
        one algorithm call for all of them: a batch, jointly chosen."""
        result = self.storage.run(functools.partial(self._suggest_op, name=name, asks=asks))
        assert isinstance(result, list)
        return result

    @staticmethod
    def compute_plan(plan: SuggestPlan) -> SuggestPlan:
        """Runs the algorithm on a plan's inputs; touches no database."""
        return replace(plan, suggestions=TuningService._compute(plan))

    def _suggest_op(
        self,
        repo: Repository,
        name: str,
        asks: Sequence[SuggestAsk],
        plan: SuggestPlan | None = None,
        *,
        defer: bool = False,
    ) -> list[SuggestResult] | SuggestPlan:
        """One suggest transaction for one or more workers' asks of one study, answered in
        order. With `defer`, a history-based algorithm is not run here: the transaction
        returns its inputs (a SuggestPlan) unless `plan` already holds suggestions
        computed from the study as it still is (same largest trial id)."""
        row = self._study_row(repo, name)
        spec = self._spec(row)
        if len(self._combine_limits) > 10_000:
            self._combine_limits.clear()
        algorithm = get_algorithm(spec.algorithm)
        combine = getattr(algorithm, "combine_asks", True)
        self._combine_limits[name] = MAX_SUGGEST_COUNT if combine else 1
        now = self.clock()
        repo.lock_study(row.id)
        self._expire_leases(repo, row, spec, now)
        if len(asks) == 1:
            held_by = {
                asks[0].worker_id: repo.trials_where(
                    row.id, states=(TrialState.ACTIVE,), worker_id=asks[0].worker_id
                )
            }
        else:
            held_by = {}
            for t in repo.trials_where(row.id, states=(TrialState.ACTIVE,)):
                held_by.setdefault(t.worker_id, []).append(t)
        out: list[list[Trial]] = []
        for ask in asks:
            held = held_by.get(ask.worker_id, [])
            for t in held:
                t.study_name = name
                self._renew(repo, row, spec, t, now)
            out.append(list(held))
        # How many new trials each ask gets, within the budget and the concurrency cap.
        wants = [max(0, ask.count - len(got)) for ask, got in zip(asks, out, strict=True)]
        if row.state != StudyState.ACTIVE.value:  # stopped or completed
            return [SuggestResult(got, not got) for got in out]
        budget = sum(wants)
        if spec.max_trials > 0:
            budget = min(budget, spec.max_trials - repo.count_budget_trials(row.id))
        if spec.max_concurrent_trials > 0:
            active = repo.count_in_state(row.id, TrialState.ACTIVE)
            budget = min(budget, spec.max_concurrent_trials - active)
        for i, want in enumerate(wants):
            wants[i] = max(0, min(want, budget))
            budget -= wants[i]
        total = sum(wants)
        lease = spec.lease_end(now)
        enqueued = (
            repo.trials_where(row.id, states=(TrialState.REQUESTED,), limit=total) if total else []
        )
        suggested: list[Params] = []
        need = total - len(enqueued)
        if need > 0:
            max_id = repo.max_trial_id(row.id)
            if plan is not None and plan.max_trial_id == max_id and plan.request.count >= need:
                suggested = plan.suggestions[:need]
            else:
                request = self._algorithm_request(repo, row, spec, need, algorithm, max_id)
                if defer and getattr(algorithm, "uses_history", True):
                    return SuggestPlan(request, max_id)
                suggested = self._compute(SuggestPlan(request, max_id))
        first = repo.allocate_trial_ids(row.id, len(suggested)) if suggested else 0
        new_rows = []
        queue = iter(enqueued)
        fresh = iter(enumerate(suggested))
        for ask, got, want in zip(asks, out, wants, strict=True):
            started = {"worker_id": ask.worker_id, "started_at": now, "lease_expires": lease}
            for _ in range(want):
                t = next(queue, None)
                if t is not None:
                    repo.update_trial(row.id, t.id, state=TrialState.ACTIVE.value, **started)
                    got.append(
                        replace(
                            t,
                            study_name=name,
                            state=TrialState.ACTIVE,
                            worker_id=ask.worker_id,
                            start_time=now,
                            lease_expires=lease,
                        )
                    )
                    continue
                step = next(fresh, None)
                if step is None:
                    break
                i, params = step
                t = Trial(
                    name,
                    first + i,
                    params,
                    TrialState.ACTIVE,
                    TrialSource.ALGORITHM,
                    worker_id=ask.worker_id,
                    create_time=now,
                    start_time=now,
                    lease_expires=lease,
                )
                new_rows.append(trial_row(t.id, t.parameters, t.state, t.source, now, **started))
                got.append(t)
        if new_rows:
            repo.insert_trials(row.id, new_rows)
        # Asks left empty-handed: decided once per transaction, as the answer is the study's.
        no_room_done: bool | None = None  # the budget is used or the concurrency cap reached
        exhausted_done: bool | None = None  # the algorithm has nothing more (a finished grid)
        results = []
        for got, want in zip(out, wants, strict=True):
            if got:
                results.append(SuggestResult(got, False))
                continue
            if want <= 0:
                if no_room_done is None:
                    no_room_done = self._complete_study_if_done(repo, row, spec)
                done = no_room_done
            else:
                if exhausted_done is None:
                    running = repo.trials_where(row.id, states=(TrialState.ACTIVE,), limit=1)
                    exhausted_done = not running
                    if exhausted_done:
                        repo.set_study_state(row.id, StudyState.COMPLETED.value)
                done = exhausted_done
            results.append(SuggestResult([], done, 0.0 if done else RETRY_AFTER_S))
        return results

    @staticmethod
    def _algorithm_request(
        repo: Repository,
        row: StudyRow,
        spec: StudySpec,
        count: int,
        algorithm: Any,
        max_trial_id: int,
    ) -> SuggestRequest:
        if not getattr(algorithm, "uses_history", True):
            return SuggestRequest(spec, [], [], count, max_trial_id)
        all_trials = repo.trials_where(row.id)
        observations = [
            Observation(
                t.id,
                t.parameters,
                t.state,
                t.final_metrics if t.state in RESULT_STATES else None,
            )
            for t in all_trials
            if t.state in FINISHED_STATES or t.state is TrialState.LOST
        ]
        pending = [
            t.parameters for t in all_trials if t.state in (TrialState.ACTIVE, TrialState.REQUESTED)
        ]
        return SuggestRequest(spec, observations, pending, count, max_trial_id)

    @staticmethod
    def _compute(plan: SuggestPlan) -> list[Params]:
        request = plan.request
        suggestions = get_algorithm(request.spec.algorithm).suggest(request)
        # Algorithms are trusted but checked: an invalid configuration never reaches a worker.
        return [request.spec.space.validate(p) for p in suggestions[: request.count]]

    def report(
        self, name: str, trial_id: int, worker_id: str, measurement: Measurement
    ) -> tuple[StopDecision | None, Trial]:
        if measurement.step < 0:
            raise InvalidArgument(f"step must be >= 0, got {measurement.step}")
        if not measurement.metrics:
            raise InvalidArgument("the measurement has no metrics; report at least the objective")
        _check_metrics(measurement.metrics, what="measurement")
        bad = [k for k, v in measurement.metrics.items() if not math.isfinite(v)]
        if bad:
            raise InvalidArgument(
                f"metrics {bad} are not finite (NaN or infinite); a diverged trial should be "
                "completed with infeasible_reason instead"
            )

        # On SQLite the one write transaction holds the whole file: the other trials'
        # numbers a median or successive-halving decision needs (a pass over their
        # reports in a large study) are read first from a snapshot, without the write
        # lock, for a study known to need them.
        peers = None
        if self.storage.single_writer and self.reads_peers(name):
            peers = self._read(functools.partial(self._peers_for, name, trial_id, measurement))

        def op(repo: Repository) -> tuple[StopDecision | None, Trial]:
            row, spec, found, now = self._touch_trial(repo, name, trial_id, for_update=True)
            self._note_peer_rule(name, spec)
            objective_names = {m.name for m in spec.metrics}
            if not objective_names & set(measurement.metrics):
                raise InvalidArgument(
                    f"the measurement has none of the study's metrics {sorted(objective_names)}; "
                    f"got {sorted(measurement.metrics)}"
                )
            trial = self._owned_active_trial(row, found, trial_id, worker_id, "report on")
            trial.lease_expires = spec.lease_end(now)
            if not repo.insert_measurement(
                row.id,
                trial_id,
                replace(measurement, time=now),
                spec.primary_metric.name,
                renew_lease_to=trial.lease_expires,
            ):
                existing = repo.get_measurement(row.id, trial_id, measurement.step)
                if existing is not None and dict(existing.metrics) != dict(measurement.metrics):
                    raise AlreadyExists(
                        f"step {measurement.step} of trial {trial_id} was already reported with "
                        f"other values {dict(existing.metrics)}; report each step once"
                    )
                return trial.stop_decision, trial
            if trial.stop_decision is not None:
                return trial.stop_decision, trial
            decision = self._decide_stop(repo, row, spec, trial_id, peers)
            if decision is not None:
                repo.update_trial(
                    row.id,
                    trial_id,
                    stop_step=decision.step,
                    stop_rule=decision.rule,
                    stop_reason=decision.reason,
                )
                trial.stop_decision = decision
            return decision, trial

        return self.storage.run(op)

    def reads_peers(self, name: str) -> bool:
        """Whether the study's early-stopping rule reads other trials (learnt from its
        reports; False until then)."""
        return self._peer_rules.get(name, False)

    def _note_peer_rule(self, name: str, spec: StudySpec) -> None:
        if len(self._peer_rules) > 10_000:
            self._peer_rules.clear()
        self._peer_rules[name] = spec.early_stopping.rule in PEER_RULES

    def _own_curve(
        self, repo: Repository, row: StudyRow, spec: StudySpec, trial_id: int
    ) -> list[tuple[int, float]]:
        """The trial's (step, loss) reports of the primary metric, by step."""
        metric = spec.primary_metric
        return [
            (m.step, _loss(metric.goal, m.metrics[metric.name]))
            for m in repo.measurements_of(row.id, [trial_id]).get(trial_id, [])
            if metric.name in m.metrics
        ]

    def _peer_numbers(
        self, repo: Repository, row: StudyRow, spec: StudySpec, trial_id: int, query: PeerQuery
    ) -> PeerNumbers:
        """What the rule reads of the other trials, computed by the database: for the
        median rule their count and median, else one number per trial. (A median rule
        reads completed peers only: a stopped trial's truncated curve would drag the
        median towards the bad trials.)"""
        goal = spec.primary_metric.goal
        where = {"metric": spec.primary_metric.name, "exclude": trial_id}
        if spec.early_stopping.rule == "median":
            count, median = repo.peer_median(row.id, query, **where)
            return count, None if median is None else _loss(goal, median)
        return [_loss(goal, v) for v in repo.peer_values(row.id, query, **where)]

    def _peers_for(
        self, name: str, trial_id: int, measurement: Measurement, repo: Repository
    ) -> tuple[PeerQuery, PeerNumbers] | None:
        """What the decision on this report will read of the other trials, from a
        snapshot taken before the report's transaction (None: nothing, or not known)."""
        row = self._study_row(repo, name)
        spec = self._spec(row)
        metric = spec.primary_metric
        if spec.early_stopping.rule not in PEER_RULES or metric.name not in measurement.metrics:
            return None
        step = measurement.step
        curve = [p for p in self._own_curve(repo, row, spec, trial_id) if p[0] != step]
        curve.append((step, _loss(metric.goal, measurement.metrics[metric.name])))
        curve.sort()
        query = peers_needed(spec.early_stopping, curve)
        if query is None:
            return None
        return query, self._peer_numbers(repo, row, spec, trial_id, query)

    def _decide_stop(
        self,
        repo: Repository,
        row: StudyRow,
        spec: StudySpec,
        trial_id: int,
        peers: tuple[PeerQuery, PeerNumbers] | None = None,
    ) -> StopDecision | None:
        """The stop decision on the trial's latest report. `peers`: the other trials'
        numbers read beforehand, used when the decision asks for exactly those."""
        policy = spec.early_stopping
        if policy.rule == "none":
            return None
        curve = self._own_curve(repo, row, spec, trial_id)
        if not curve:
            return None
        query = peers_needed(policy, curve)
        if query is None:
            return decide_from_values(policy, curve, [])
        if peers is not None and peers[0] == query:
            numbers = peers[1]
        else:
            numbers = self._peer_numbers(repo, row, spec, trial_id, query)
        if isinstance(numbers, tuple):
            return median_decision(policy, curve, *numbers)
        return decide_from_values(policy, curve, numbers)

    def heartbeat(self, name: str, trial_id: int, worker_id: str) -> tuple[bool, Trial]:
        def op(repo: Repository) -> tuple[bool, Trial]:
            row, spec, found, now = self._touch_trial(repo, name, trial_id, for_update=True)
            trial = self._owned_active_trial(row, found, trial_id, worker_id, "heartbeat")
            self._renew(repo, row, spec, trial, now)
            return trial.stop_decision is not None, trial

        return self.storage.run(op)

    def complete_trial(
        self,
        name: str,
        trial_id: int,
        worker_id: str,
        final_metrics: Mapping[str, float] | None,
        infeasible_reason: str = "",
    ) -> Trial:
        if len(infeasible_reason) > MAX_REASON_LENGTH:
            raise InvalidArgument(
                f"infeasible_reason is longer than {MAX_REASON_LENGTH} characters"
            )
        if final_metrics is not None:
            _check_metrics(final_metrics, what="final measurement")

        def op(repo: Repository) -> Trial:
            row, spec, found, now = self._touch_trial(repo, name, trial_id, for_update=True)
            _check_worker(worker_id)
            current = self._found(row, found, trial_id)
            if current.state in FINISHED_STATES and current.worker_id == worker_id:
                # A retried CompleteTrial whose first attempt committed: answer the same.
                same = (
                    (
                        infeasible_reason
                        and current.state is TrialState.INFEASIBLE
                        and current.reason == infeasible_reason
                    )
                    or (
                        not infeasible_reason
                        and final_metrics is not None
                        and current.final_metrics == dict(final_metrics)
                    )
                    or (
                        not infeasible_reason
                        and final_metrics is None
                        and current.state in RESULT_STATES
                    )
                )
                if same:
                    return current
            trial = self._owned_active_trial(row, current, trial_id, worker_id, "complete")
            state, metrics, reason = self._final_outcome(
                repo, row, spec, trial, final_metrics, infeasible_reason
            )
            repo.update_trial(
                row.id,
                trial_id,
                state=state.value,
                final_metrics=metrics,
                reason=reason,
                ended_at=now,
                lease_expires=0.0,
            )
            trial.state, trial.final_metrics, trial.reason, trial.end_time = (
                state,
                metrics,
                reason,
                now,
            )
            self._complete_study_if_done(repo, row, spec)
            return trial

        return self.storage.run(op)

    def _final_outcome(
        self,
        repo: Repository,
        row: StudyRow,
        spec: StudySpec,
        trial: Trial,
        final_metrics: Mapping[str, float] | None,
        infeasible_reason: str,
    ) -> tuple[TrialState, dict[str, float] | None, str]:
        """The documented rule: infeasible when asked, or when an objective is NaN/inf."""
        if infeasible_reason:
            return TrialState.INFEASIBLE, None, infeasible_reason
        if final_metrics is None:
            ms = repo.measurements_of(row.id, [trial.id]).get(trial.id, [])
            if not ms:
                raise InvalidArgument(
                    f"trial {trial.id} has no reports: give the final metrics "
                    f"{[m.name for m in spec.metrics]}"
                )
            final_metrics = ms[-1].metrics
        missing = [m.name for m in spec.metrics if m.name not in final_metrics]
        if missing:
            raise InvalidArgument(
                f"the final measurement lacks the study's metrics {missing}; got "
                f"{sorted(final_metrics)}"
            )
        non_finite = [m.name for m in spec.metrics if not math.isfinite(final_metrics[m.name])]
        if non_finite:
            return (
                TrialState.INFEASIBLE,
                None,
                f"non-finite final value of {non_finite} (NaN or infinite)",
            )
        bad_extra = [k for k, v in final_metrics.items() if not math.isfinite(v)]
        if bad_extra:
            raise InvalidArgument(
                f"final metrics {bad_extra} are not finite; leave them out or report finite values"
            )
        state = TrialState.STOPPED_EARLY if trial.stop_decision else TrialState.COMPLETED
        return state, dict(final_metrics), ""

    def fail_trial(self, name: str, trial_id: int, worker_id: str, reason: str) -> Trial:
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidArgument(f"reason is longer than {MAX_REASON_LENGTH} characters")

        def op(repo: Repository) -> Trial:
            row, spec, found, now = self._touch_trial(repo, name, trial_id, for_update=True)
            _check_worker(worker_id)
            current = self._found(row, found, trial_id)
            if current.state is TrialState.FAILED and current.worker_id == worker_id:
                return current
            trial = self._owned_active_trial(row, current, trial_id, worker_id, "fail")
            reason_text = reason or "failed (no reason given)"
            repo.update_trial(
                row.id,
                trial_id,
                state=TrialState.FAILED.value,
                reason=reason_text,
                ended_at=now,
                lease_expires=0.0,
            )
            trial.state, trial.reason, trial.end_time = TrialState.FAILED, reason_text, now
            self._complete_study_if_done(repo, row, spec)
            return trial

        return self.storage.run(op)

    def release_trial(self, name: str, trial_id: int, worker_id: str) -> Trial:
        def op(repo: Repository) -> Trial:
            row, spec, found, now = self._touch_trial(repo, name, trial_id, for_update=True)
            trial = self._owned_active_trial(row, found, trial_id, worker_id, "release")
            # The next worker starts the trial afresh: its old reports would clash with the
            # new ones step by step, so they go.
            repo.delete_measurements(row.id, trial_id)
            repo.update_trial(
                row.id,
                trial_id,
                state=TrialState.REQUESTED.value,
                worker_id="",
                lease_expires=0.0,
                started_at=0.0,
                stop_step=None,
                stop_rule="",
                stop_reason="",
            )
            return replace(
                trial,
                state=TrialState.REQUESTED,
                worker_id="",
                lease_expires=0.0,
                stop_decision=None,
            )

        return self.storage.run(op)

    def add_trial(
        self, name: str, params: Mapping[str, Any], final_metrics: Mapping[str, float] | None
    ) -> Trial:
        if final_metrics is not None:
            _check_metrics(final_metrics, what="final measurement")

        def op(repo: Repository) -> Trial:
            row = self._study_row(repo, name)
            spec = self._spec(row)
            valid = spec.space.validate(params)
            now = self.clock()
            repo.lock_study(row.id)
            trial_id = repo.allocate_trial_ids(row.id, 1)
            if final_metrics is None:
                repo.insert_trials(
                    row.id,
                    [trial_row(trial_id, valid, TrialState.REQUESTED, TrialSource.USER, now)],
                )
                return Trial(
                    name, trial_id, valid, TrialState.REQUESTED, TrialSource.USER, create_time=now
                )
            missing = [m.name for m in spec.metrics if m.name not in final_metrics]
            if missing:
                raise InvalidArgument(f"the final measurement lacks the study's metrics {missing}")
            bad = [k for k, v in final_metrics.items() if not math.isfinite(v)]
            if bad:
                raise InvalidArgument(f"final metrics {bad} are not finite")
            repo.insert_trials(
                row.id,
                [
                    trial_row(
                        trial_id,
                        valid,
                        TrialState.COMPLETED,
                        TrialSource.USER,
                        now,
                        final_metrics=dict(final_metrics),
                        started_at=now,
                        ended_at=now,
                    )
                ],
            )
            return Trial(
                name,
                trial_id,
                valid,
                TrialState.COMPLETED,
                TrialSource.USER,
                final_metrics=dict(final_metrics),
                create_time=now,
                start_time=now,
                end_time=now,
            )

        return self.storage.run(op)

    def get_trial(self, name: str, trial_id: int) -> Trial:
        def op(repo: Repository) -> Trial:
            row, _, found, _ = self._touch_trial(repo, name, trial_id, for_update=False)
            trial = self._found(row, found, trial_id)
            trial.measurements = repo.measurements_of(row.id, [trial_id]).get(trial_id, [])
            return trial

        return self._read(op)

    def list_trials(
        self,
        name: str,
        states: Sequence[TrialState],
        page_size: int,
        page_token: str,
        with_measurements: bool = True,
    ) -> tuple[list[Trial], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must be >= 0")
        size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        after_text = _from_page_token(page_token)
        try:
            after = int(after_text or 0)
        except ValueError:
            raise InvalidArgument("page_token is not one this server issued") from None

        def op(repo: Repository) -> tuple[list[Trial], str]:
            row, _, _ = self._touch_study(repo, name)
            found = repo.trials_where(row.id, states=states, after_id=after, limit=size + 1)
            more = len(found) > size
            found = found[:size]
            if with_measurements:
                ms = repo.measurements_of(row.id, [t.id for t in found])
                for t in found:
                    t.measurements = ms.get(t.id, [])
            for t in found:
                t.study_name = name
            return found, (_page_token(str(found[-1].id)) if more and found else "")

        return self._read(op)

    def optimal_trials(self, name: str, count: int) -> list[Trial]:
        if count < 0:
            raise InvalidArgument("count must be >= 0")

        def op(repo: Repository) -> list[Trial]:
            row = self._study_row(repo, name)
            spec = self._spec(row)
            # Rank on the final metrics alone (one metric: in the database); load whole
            # trials only for the winners.
            if len(spec.metrics) > 1:
                results = repo.final_results(row.id, RESULT_STATES)
                best = pareto_front(
                    spec, [Observation(tid, {}, state, fm) for tid, state, fm in results]
                )
            else:
                metric = spec.primary_metric
                best = repo.best_by_metric(
                    row.id,
                    RESULT_STATES,
                    metric.name,
                    maximize=metric.goal is Goal.MAXIMIZE,
                    count=count or 1,
                )
            found = {t.id: t for t in repo.trials_by_id(row.id, best)}
            out = [found[tid] for tid in best]
            for t in out:
                t.study_name = name
            return out

        return self._read(op)
