"""On SQLite (one writer for the whole file) the optimiser runs outside the write
transaction: reports and other studies go on while a suggestion is computed, and a
trial added meanwhile by another process makes the suggestion be computed again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import BlockingService
from tunewire.server.algorithms.gp import GaussianProcessSearch
from tunewire.server.domain.study import Measurement, StudySpec, TrialState
from tunewire.server.service.suggest import SUGGEST_OPTIMISTIC_ROUNDS
from tunewire.server.storage.sql import SqlStorage

SPEC = StudySpec.from_dict(
    {
        "parameters": [
            {"name": "x", "type": "float", "min": 0.0, "max": 1.0},
            {"name": "y", "type": "float", "min": 0.0, "max": 1.0},
        ],
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "gp",
        "seed": 3,
    }
)


class Gate:
    """Holds the first `hold` GP suggestions inside the algorithm until released."""

    def __init__(self, hold: int = 1) -> None:
        self.hold = hold
        self.inside = threading.Event()
        self.release = threading.Event()
        self.requests: list[Any] = []
        self._real = GaussianProcessSearch.suggest

    def method(self) -> Any:
        """A function to put in the class's place (a function binds `self`; this does not)."""
        return lambda algorithm, request: self(algorithm, request)

    def __call__(self, algorithm: GaussianProcessSearch, request: Any) -> Any:
        self.requests.append(request)
        if len(self.requests) <= self.hold:
            self.inside.set()
            assert self.release.wait(30), "test never released the suggestion"
        return self._real(algorithm, request)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'gate.db'}"


def _suggest_in_thread(
    service: BlockingService, study: str, worker: str
) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(
        target=lambda: out.append(service.suggest_trials(study, 1, worker)), daemon=True
    )
    thread.start()
    return thread, out


def test_reports_and_other_studies_go_on_while_a_suggestion_is_computed(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = BlockingService(SqlStorage(db))
    try:
        service.create_study("busy", SPEC)
        service.create_study("other", SPEC)
        running = service.suggest_trials("busy", 1, "w1").trials[0]
        gate = Gate()
        monkeypatch.setattr(GaussianProcessSearch, "suggest", gate.method())
        thread, out = _suggest_in_thread(service, "busy", "w2")
        assert gate.inside.wait(30)
        # The suggestion is inside the optimiser: writes to the same database go through.
        decision, _ = service.report("busy", running.id, "w1", Measurement(0, {"loss": 0.5}))
        assert decision is None
        service.complete_trial("busy", running.id, "w1", Measurement(0, {"loss": 0.4}))
        other = service.suggest_trials("other", 1, "w3").trials  # not held: gate holds one
        assert len(other) == 1
        assert thread.is_alive()
        gate.release.set()
        thread.join(30)
        (trial,) = out[0].trials
        assert trial.state is TrialState.ACTIVE and trial.worker_id == "w2"
        assert trial.id == running.id + 1
        assert service.get_trial("busy", running.id).state is TrialState.COMPLETED
    finally:
        service.close()


def test_a_trial_added_by_another_process_meanwhile_is_seen_by_the_suggestion(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two services on one file stand for two server processes: no shared in-process lock.
    service, elsewhere = BlockingService(SqlStorage(db)), BlockingService(SqlStorage(db))
    try:
        service.create_study("s", SPEC)
        gate = Gate()
        monkeypatch.setattr(GaussianProcessSearch, "suggest", gate.method())
        thread, out = _suggest_in_thread(service, "s", "w1")
        assert gate.inside.wait(30)
        gate.hold = 0
        taken = elsewhere.suggest_trials("s", 1, "w2").trials[0]
        gate.release.set()
        thread.join(30)
        (trial,) = out[0].trials
        assert trial.id != taken.id
        # Computed again from the study as it is now: the other worker's trial is pending.
        assert len(gate.requests) == 3
        assert gate.requests[0].pending == []
        assert gate.requests[2].pending == [taken.parameters]
        assert trial.parameters != taken.parameters
        states = {t.id: t.state for t in service.list_trials("s", (), 100, 0)[0]}
        assert states == {taken.id: TrialState.ACTIVE, trial.id: TrialState.ACTIVE}
    finally:
        service.close()
        elsewhere.close()


def test_a_study_that_keeps_changing_is_answered_by_the_final_transaction(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process adds a trial while each optimistic round computes: after the last
    round the suggestion is computed inside one transaction, from the study as it then
    is."""
    service, elsewhere = BlockingService(SqlStorage(db)), BlockingService(SqlStorage(db))
    real = GaussianProcessSearch.suggest
    requests: list[Any] = []

    def busy_elsewhere(algorithm: GaussianProcessSearch, request: Any) -> Any:
        requests.append(request)
        if len(requests) <= SUGGEST_OPTIMISTIC_ROUNDS:
            elsewhere.add_trial(
                "s", {"x": 0.1 * len(requests), "y": 0.5}, Measurement(0, {"loss": 1.0})
            )
        return real(algorithm, request)

    try:
        service.create_study("s", SPEC)
        monkeypatch.setattr(GaussianProcessSearch, "suggest", busy_elsewhere)
        (trial,) = service.suggest_trials("s", 1, "w1").trials
        assert len(requests) == SUGGEST_OPTIMISTIC_ROUNDS + 1
        # The final computation saw every trial added meanwhile.
        assert len(requests[-1].observations) == SUGGEST_OPTIMISTIC_ROUNDS
        assert trial.state is TrialState.ACTIVE and trial.worker_id == "w1"
        assert trial.id == SUGGEST_OPTIMISTIC_ROUNDS + 1
    finally:
        service.close()
        elsewhere.close()
