"""Many workers on one GP study: suggestions with many trials running stay valid, distinct
and reproducible, and a client that gives up waiting and asks again does not make the
server compute the same suggestion twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tunewire.client import TunewireClientError, TuningClient
from tunewire.server.algorithms.gp import GaussianProcessSearch, acquisition
from tunewire.server.app import RunningServer, run_in_background

SPACE = [{"name": f"x{i}", "type": "float", "min": 0.0, "max": 1.0} for i in range(4)]


def spec(seed: int = 3) -> dict[str, Any]:
    return {
        "parameters": SPACE,
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "gp",
        "seed": seed,
        "initial_trials": 4,
    }


def loss(params: dict[str, Any]) -> float:
    return float(sum((params[f"x{i}"] - 0.3) ** 2 for i in range(4)))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = run_in_background(f"sqlite:///{tmp_path / 'many.db'}")
    yield srv
    srv.stop(0)


def study_with_history(client: TuningClient, name: str, seed: int, running: int) -> None:
    """A study with 12 results and `running` trials held by other workers."""
    client.create_study(name, spec(seed))
    rng = np.random.default_rng(seed)
    for _ in range(12):
        params = {f"x{i}": float(v) for i, v in enumerate(rng.random(4))}
        client.add_trial(name, params, {"loss": loss(params)})
    for w in range(running):
        client.add_trial(name, {f"x{i}": float(v) for i, v in enumerate(rng.random(4))})
        client.suggest(name, worker_id=f"holder{w}")


def test_many_running_trials_get_valid_distinct_reproducible_suggestions(
    server: RunningServer,
) -> None:
    running = acquisition.MAX_JOINT_PENDING + 24  # scored with the believer
    client = TuningClient(server.target, timeout=120)
    got: list[list[dict[str, Any]]] = []
    for name in ("first", "second"):  # the same seed and history twice
        study_with_history(client, name, seed=5, running=running)
        got.append([dict(client.suggest(name, worker_id=f"new{i}")[0].params) for i in range(6)])
    assert got[0] == got[1]
    held = [
        t.params
        for t in client.list_trials("first", ["active"])
        if t.worker_id.startswith("holder")
    ]
    tried = [t.params for t in client.list_trials("first", ["completed"])]
    for params in got[0]:
        assert set(params) == {f"x{i}" for i in range(4)}
        assert all(0.0 <= v <= 1.0 for v in params.values())
        for other in held + tried + [p for p in got[0] if p is not params]:
            assert max(abs(params[k] - other[k]) for k in params) > 1e-4
    client.close()


def test_a_retried_suggestion_is_not_computed_twice(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TuningClient(server.target, timeout=120)
    study_with_history(client, "s", seed=1, running=0)
    calls: list[int] = []
    inside, release = threading.Event(), threading.Event()
    real = GaussianProcessSearch.suggest

    def held(algorithm: GaussianProcessSearch, request: Any) -> Any:
        calls.append(request.trial_index)
        inside.set()
        assert release.wait(30), "the test never released the suggestion"
        return real(algorithm, request)

    monkeypatch.setattr(GaussianProcessSearch, "suggest", held)
    impatient = TuningClient(server.target, timeout=0.5, retry_timeout=0)
    with pytest.raises(TunewireClientError) as err:
        impatient.suggest("s", worker_id="w1")
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert inside.wait(10)
    # The worker asks again while the first answer is still being computed.
    answers: list[Any] = []
    retry = threading.Thread(target=lambda: answers.append(client.suggest("s", worker_id="w1")))
    retry.start()
    release.set()
    retry.join(60)
    (trial,) = answers[0]
    assert len(calls) == 1
    assert client.get_trial("s", trial.id).worker_id == "w1"
    # Once answered, the worker's asks get its trial back, with no computation.
    assert [t.id for t in client.suggest("s", worker_id="w1")] == [trial.id]
    assert len(calls) == 1
    impatient.close()
    client.close()
