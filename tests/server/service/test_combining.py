"""Concurrent suggestions for one study in one process share a transaction on PostgreSQL
(SuggestCombiner): asks queued behind a running one are answered together, in order,
each worker as if the asks had been serialised."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server.helpers import BlockingService
from tunewire.server.domain.errors import NotFound
from tunewire.server.domain.study import StudySpec, TrialState
from tunewire.server.service.combining import SuggestCombiner
from tunewire.server.service.suggest import CombiningSuggest, SuggestAsk, SuggestResult
from tunewire.server.storage.sql import SqlStorage

SPEC = StudySpec.from_dict(
    {
        "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "random",
        "seed": 1,
    }
)


class Recorder:
    """A batch runner that records each batch and holds the first until released."""

    def __init__(self) -> None:
        self.batches: list[list[SuggestAsk]] = []
        self.first_inside = threading.Event()
        self.release = threading.Event()
        self.fail_with: BaseException | None = None

    def __call__(self, name: str, asks: Sequence[SuggestAsk]) -> list[SuggestResult]:
        self.batches.append(list(asks))
        if len(self.batches) == 1:
            self.first_inside.set()
            assert self.release.wait(30), "the test never released the first batch"
        if self.fail_with is not None:
            raise self.fail_with
        return [SuggestResult([], False, float(i)) for i, _ in enumerate(asks)]


def _wait_queued(combiner: SuggestCombiner[SuggestAsk, SuggestResult], name: str, n: int) -> None:
    for _ in range(3000):
        with combiner._lock:
            if len(combiner._queues.get(name, [])) >= n:
                return
        threading.Event().wait(0.001)
    raise AssertionError(f"{n} asks never queued")


def test_asks_queued_behind_a_running_one_are_answered_together_in_order() -> None:
    recorder = Recorder()
    combiner = SuggestCombiner(recorder, lambda name: 100)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(combiner.submit, "s", SuggestAsk("w0", 1))
        assert recorder.first_inside.wait(10)
        asks = [SuggestAsk("w1", 1), SuggestAsk("w2", 2), SuggestAsk("w1", 1), SuggestAsk("w3", 1)]
        futures = []
        for i, ask in enumerate(asks):
            futures.append(pool.submit(combiner.submit, "s", ask))
            _wait_queued(combiner, "s", i + 1)  # queued in this order
        recorder.release.set()
        results = [f.result(10) for f in [first, *futures]]
    # The first ran alone; the four queued meanwhile went in one batch, except the second
    # ask of w1, which waits for the next transaction and so sees what its first one got.
    assert recorder.batches == [
        [SuggestAsk("w0", 1)],
        [SuggestAsk("w1", 1), SuggestAsk("w2", 2), SuggestAsk("w3", 1)],
        [SuggestAsk("w1", 1)],
    ]
    # Each ask got its own answer (the recorder numbers them within their batch).
    assert [r.retry_after_seconds for r in results] == [0.0, 0.0, 1.0, 0.0, 2.0]


def test_a_failed_batch_fails_each_of_its_asks_and_the_next_batch_still_runs() -> None:
    recorder = Recorder()
    combiner = SuggestCombiner(recorder, lambda name: 100)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combiner.submit, "s", SuggestAsk("w0", 1))
        assert recorder.first_inside.wait(10)
        others = [pool.submit(combiner.submit, "s", SuggestAsk(f"w{i}", 1)) for i in (1, 2)]
        _wait_queued(combiner, "s", 2)
        recorder.fail_with = NotFound("study 's' not found")
        recorder.release.set()
        for future in [first, *others]:
            with pytest.raises(NotFound):
                future.result(10)
        recorder.fail_with = None
        assert combiner.submit("s", SuggestAsk("w9", 1)).retry_after_seconds == 0.0
    assert combiner._queues == {}


@pytest.fixture
def pg_service(pg_database: str) -> Iterator[BlockingService]:
    from tests.conftest import _truncate

    _truncate(pg_database)
    service = BlockingService(SqlStorage(pg_database), threads=32)
    assert isinstance(service.service.suggest.inner, CombiningSuggest)
    yield service
    service.close()


def _count_batches(service: BlockingService, counted: Callable[[str, int], None]) -> None:
    """Calls `counted(study, asks)` for each transaction of combined asks."""
    strategy = service.service.suggest.inner
    assert isinstance(strategy, CombiningSuggest)
    combiner = strategy._combiner
    real = combiner._run

    def counting(name: str, asks: Sequence[SuggestAsk]) -> list[SuggestResult]:
        counted(name, len(asks))
        return real(name, asks)

    combiner._run = counting


def test_concurrent_workers_on_postgresql_share_transactions_and_get_distinct_trials(
    pg_service: BlockingService,
) -> None:
    service = pg_service
    service.create_study("combined", SPEC)
    batches: list[int] = []
    _count_batches(service, lambda name, n: batches.append(n))
    workers = [f"w{i}" for i in range(24)]
    start = threading.Barrier(len(workers))

    def ask(worker: str) -> list[int]:
        start.wait()
        first = service.suggest_trials("combined", 1, worker)
        again = service.suggest_trials("combined", 1, worker)  # still holds its trial
        assert [t.id for t in again.trials] == [t.id for t in first.trials]
        return [t.id for t in first.trials]

    with ThreadPoolExecutor(len(workers)) as pool:
        got = dict(zip(workers, pool.map(ask, workers), strict=True))
    ids = [i for trial_ids in got.values() for i in trial_ids]
    assert len(ids) == len(workers) and len(set(ids)) == len(ids)
    assert sorted(ids) == list(range(1, len(workers) + 1))
    trials = service.list_trials("combined", [TrialState.ACTIVE], 100, 0)[0]
    assert {t.id: t.worker_id for t in trials} == {
        i: w for w, trial_ids in got.items() for i in trial_ids
    }
    # 48 asks in fewer transactions than asks: queued asks were answered together.
    assert sum(batches) == 2 * len(workers)
    assert len(batches) < 2 * len(workers)


def test_budget_and_concurrency_caps_hold_across_a_batch(pg_service: BlockingService) -> None:
    service = pg_service
    spec = StudySpec.from_dict(
        {**SPEC.to_dict(), "max_trials": 5, "max_concurrent_trials": 3}  # type: ignore[dict-item]
    )
    service.create_study("capped", spec)
    strategy = service.service.suggest.inner
    assert isinstance(strategy, CombiningSuggest)
    answer_all = strategy._combiner._run
    results = answer_all("capped", [SuggestAsk(f"w{i}", 1) for i in range(5)])
    assert [len(r.trials) for r in results] == [1, 1, 1, 0, 0]
    assert [r.retry_after_seconds for r in results[3:]] == [1.0, 1.0]
    assert not any(r.study_done for r in results)


def test_gp_studies_are_answered_one_request_at_a_time(pg_service: BlockingService) -> None:
    """A jointly optimised GP batch costs more than single suggestions, so GP studies do
    not combine requests (the algorithm's `combine_asks = False`)."""
    service = pg_service
    gp_spec = StudySpec.from_dict({**SPEC.to_dict(), "algorithm": "gp"})  # type: ignore[dict-item]
    service.create_study("gp", gp_spec)
    service.create_study("random", SPEC)
    sizes: dict[str, list[int]] = {"gp": [], "random": []}
    _count_batches(service, lambda name, n: sizes[name].append(n))
    for name in sizes:  # the first suggestion tells the service the study's algorithm
        service.suggest_trials(name, 1, "first")
    workers = [f"w{i}" for i in range(12)]
    for name in sizes:
        start = threading.Barrier(len(workers))

        def ask(worker: str, study: str = name, barrier: threading.Barrier = start) -> int:
            barrier.wait()
            return service.suggest_trials(study, 1, worker).trials[0].id

        with ThreadPoolExecutor(len(workers)) as pool:
            ids = list(pool.map(ask, workers))
        assert len(set(ids)) == len(workers)
    assert sizes["gp"] == [1] * (1 + len(workers))
    assert max(sizes["random"]) > 1
