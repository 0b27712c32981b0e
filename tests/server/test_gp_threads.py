"""The GP runs numpy/SciPy's BLAS on one thread while it computes a suggestion (spinning
BLAS threads cost several times the suggestion's own CPU on a shared machine) and gives
the previous setting back afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from tunewire.server.algorithms import gp
from tunewire.server.algorithms.base import Observation, SuggestRequest
from tunewire.server.algorithms.gp import GaussianProcessSearch
from tunewire.server.study import StudySpec, TrialState


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
    real = gp._optimise_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(gp, "_optimise_batch", spy)
    (params,) = GaussianProcessSearch().suggest(SuggestRequest(spec, history, [], 1, 8))
    assert 0.0 <= params["x"] <= 1.0
    assert seen and all(n == 1 for n in seen[0])
    assert _blas_threads() == before
