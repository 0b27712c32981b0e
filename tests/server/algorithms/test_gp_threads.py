"""The GP runs numpy/SciPy's BLAS on one thread while it computes a suggestion (spinning
BLAS threads cost several times the suggestion's own CPU on a shared machine) and gives
the previous setting back afterwards."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from tunewire.server.algorithms.base import Observation, SuggestRequest
from tunewire.server.algorithms.gp import GaussianProcessSearch, policy
from tunewire.server.domain.study import StudySpec, TrialState


def _blas_threads() -> list[int]:
    return [int(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]


def test_blas_is_single_threaded_during_a_suggestion_and_restored_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = StudySpec.from_dict(
        {
            "parameters": [
                {"name": "x", "type": "float", "min": 0.0, "max": 1.0},
                {"name": "y", "type": "float", "min": 0.0, "max": 1.0},
            ],
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "gp",
            "initial_trials": 3,
        }
    )
    rng = np.random.default_rng(0)
    history = [
        Observation(i + 1, {"x": float(a), "y": float(b)}, TrialState.COMPLETED, {"loss": a * b})
        for i, (a, b) in enumerate(rng.random((8, 2)))
    ]
    before = _blas_threads()
    assert before, "numpy has no BLAS that threadpoolctl can see"
    seen: list[list[int]] = []
    real = policy.optimise_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(policy, "optimise_batch", spy)
    (params,) = GaussianProcessSearch().suggest(SuggestRequest(spec, history, [], 1, 8))
    assert 0.0 <= params["x"] <= 1.0
    assert seen and all(n == 1 for n in seen[0])
    assert _blas_threads() == before


@pytest.mark.slow
def test_server_torch_threads_setting_reaches_the_threads_that_compute_suggestions(
    tmp_path: Path,
) -> None:
    """`--torch-threads 1` holds in the RPC threads too. OpenMP keeps its thread count per
    thread, so setting it in the main thread alone left each RPC thread's first GP kernel
    (torch.cdist) starting a team of one thread per core, whose spinning doubled a
    suggestion's CPU and took it from trainers on the same cores."""
    from benchmarks.common import cpu_seconds, free_port, start_server_process
    from tunewire.client import TuningClient

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    server = start_server_process(
        f"sqlite:///{tmp_path / 'threads.db'}",
        port,
        tmp_path / "log",
        threads=4,
        torch_threads=1,
        env=env,
    )
    try:
        client = TuningClient(f"127.0.0.1:{port}")
        names = [f"x{i}" for i in range(6)]
        client.create_study(
            "threads",
            {
                "parameters": [{"name": n, "type": "float", "min": 0.0, "max": 1.0} for n in names],
                "metrics": [{"name": "loss", "goal": "minimize"}],
                "algorithm": "gp",
            },
        )
        rng = np.random.default_rng(0)
        for row in rng.random((20, 6)):
            client.add_trial(
                "threads",
                dict(zip(names, map(float, row), strict=True)),
                {"loss": float(row.sum())},
            )
        client.suggest("threads", worker_id="w", count=1)[0].complete({"loss": 1.0})  # warm-up
        cpu, wall = cpu_seconds(server.pid), time.perf_counter()
        for _ in range(6):
            trial = client.suggest("threads", worker_id="w", count=1)[0]
            trial.complete({"loss": float(sum(trial.params.values()))})
        cpu, wall = cpu_seconds(server.pid) - cpu, time.perf_counter() - wall
        # One thread computes while the client waits: CPU cannot exceed the wall time by
        # more than the event loop's and gRPC's small share (a spinning team: about 2x).
        assert cpu <= 1.25 * wall + 0.05, (cpu, wall)
    finally:
        server.terminate()
        server.wait(timeout=30)
