"""gp_mf: the GP over (configuration, fidelity) that learns from every trial's reports."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from tunewire.client import TunewireClientError, TuningClient
from tunewire.server.algorithms import Observation, SuggestRequest, get_algorithm
from tunewire.server.algorithms.encoding import ModelEncoding
from tunewire.server.algorithms.gp.fidelity import (
    MultiFidelityGaussianProcessSearch,
    fidelity,
    fidelity_rows,
    levels,
    max_step,
)
from tunewire.server.domain.study import StudySpec, TrialState

SPACE = [
    {"name": "a", "type": "float", "min": 0.0, "max": 1.0},
    {"name": "b", "type": "float", "min": 0.0, "max": 1.0},
]
ASHA = {"rule": "successive_halving", "min_resource": 1, "reduction_factor": 3, "max_resource": 27}


def spec(early_stopping: dict[str, Any] | None = None, **extra: Any) -> StudySpec:
    return StudySpec.from_dict(
        {
            "parameters": SPACE,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "gp_mf",
            "seed": 5,
            "early_stopping": early_stopping or ASHA,
            **extra,
        }
    )


def final_loss(a: float, b: float) -> float:
    return (a - 0.3) ** 2 + (b - 0.7) ** 2


def curve(a: float, b: float, last: int) -> tuple[tuple[int, float], ...]:
    """A loss that falls with training towards the configuration's final value; every
    configuration keeps its rank at every step (what makes low fidelities informative)."""
    return tuple((s, final_loss(a, b) + 1.0 / s) for s in range(1, last + 1))


def history(n: int, seed: int = 0) -> list[Observation]:
    """Successive halving's shape: most trials stopped at step 1, fewer at 3 and 9, a few
    trained to the end (27)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = rng.random(2)
        last = (1, 1, 1, 3, 3, 9, 27)[i % 7]
        c = curve(a, b, last)
        state = TrialState.COMPLETED if last == 27 else TrialState.STOPPED_EARLY
        out.append(Observation(i + 1, {"a": a, "b": b}, state, {"loss": c[-1][1]}, c))
    return out


def test_levels_are_the_rungs_or_powers_of_three_below_full_training() -> None:
    assert levels(spec(), 27) == [1, 3, 9]
    assert levels(spec({"rule": "median"}), 50) == [1, 3, 9, 27]
    assert fidelity(1, 27) == 0.0 and fidelity(27, 27) == 1.0
    assert fidelity(3, 27) == pytest.approx(1 / 3)
    # Full training: successive halving's max_resource, else the study's max_step, else
    # the furthest report.
    assert max_step(spec(), []) == 27
    assert max_step(spec({"rule": "median", "max_step": 40}), []) == 40
    assert max_step(spec({"rule": "median"}), [((1, 1.0), (12, 0.5)), ((1, 2.0),)]) == 12


def test_a_stopped_curve_is_not_a_result_at_full_training() -> None:
    """A trial stopped at step 3 enters at fidelities 0 and 1/3 only; a completed one also
    at fidelity 1 with its final result; a running one at the levels it reported."""
    s = spec()
    stopped = Observation(1, {"a": 0.1, "b": 0.1}, TrialState.STOPPED_EARLY, {"loss": 0.4}, (
        (1, 0.9), (2, 0.5), (3, 0.6),
    ))  # fmt: skip
    done = Observation(
        2, {"a": 0.9, "b": 0.9}, TrialState.COMPLETED, {"loss": 0.2}, curve(0.9, 0.9, 27)
    )
    failed = Observation(3, {"a": 0.5, "b": 0.5}, TrialState.FAILED, None)
    request = SuggestRequest(
        s, [stopped, done, failed], [{"a": 0.2, "b": 0.2}], 1, 4, [((1, 0.7),)]
    )
    rows = fidelity_rows(s, ModelEncoding(s.space), request, seed=0)
    by_trial = {}
    for x, y in zip(rows.x, rows.y[:, 0], strict=True):
        by_trial.setdefault((round(x[0], 3), round(x[1], 3)), []).append((x[2], y))
    assert sorted(f for f, _ in by_trial[(0.1, 0.1)]) == pytest.approx([0.0, 1 / 3])
    assert sorted(f for f, _ in by_trial[(0.9, 0.9)]) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [f for f, _ in by_trial[(0.2, 0.2)]] == [0.0]
    assert (0.5, 0.5) not in by_trial  # failed trials are added at the target by the caller
    # Best so far up to each level (0.5 at step 3, not the last report 0.6): values are
    # warped and oriented (larger is better), so compare orders only.
    (_, at_first), (_, at_second) = sorted(by_trial[(0.1, 0.1)])
    assert at_second > at_first
    # With 3 trials and 2 parameters, no level has more trials than parameters: the
    # target is the first rung.
    assert rows.target == 0.0


def test_the_target_climbs_to_the_highest_level_enough_trials_reached() -> None:
    s = spec()
    encoding = ModelEncoding(s.space)
    few = fidelity_rows(s, encoding, SuggestRequest(s, history(7), [], 1, 8), seed=0)
    assert few.target == pytest.approx(1 / 3)  # 7 at step 1, 3 at step 3, 1 at 9, 1 at 27
    many = fidelity_rows(s, encoding, SuggestRequest(s, history(28), [], 1, 29), seed=0)
    assert many.target == 1.0  # 4 trained to the end


def test_suggestions_are_a_pure_function_of_the_history_and_use_the_curves() -> None:
    s = spec()
    algorithm = get_algorithm("gp_mf")
    assert isinstance(algorithm, MultiFidelityGaussianProcessSearch) and algorithm.uses_curves
    request = SuggestRequest(s, history(35), [{"a": 0.6, "b": 0.2}], 1, 36, [((1, 1.2),)])
    first = algorithm.suggest(request)
    assert algorithm.suggest(request) == first
    (point,) = first
    # Near the optimum (0.3, 0.7), which only 5 trials trained to the end located.
    assert final_loss(point["a"], point["b"]) < 0.01, point
    # Without the curves the same trials say less: a different suggestion.
    bare = [Observation(o.trial_id, o.params, o.state, o.metrics) for o in request.observations]
    assert algorithm.suggest(SuggestRequest(s, bare, request.pending, 1, 36)) != first


def test_a_study_of_several_metrics_is_refused(client: TuningClient) -> None:
    with pytest.raises(TunewireClientError) as caught:
        client.create_study(
            "two",
            {
                "parameters": SPACE,
                "metrics": [
                    {"name": "loss", "goal": "minimize"},
                    {"name": "latency", "goal": "minimize"},
                ],
                "algorithm": "gp_mf",
            },
        )
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "gp_mf models the learning curve of one metric" in caught.value.details


def test_the_server_gives_the_model_every_report_of_finished_and_running_trials(
    client: TuningClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real gRPC server on SQLite: workers report every step and obey
    successive halving's stops; the algorithm is handed each trial's reports."""
    seen: list[SuggestRequest] = []
    real = MultiFidelityGaussianProcessSearch.suggest

    def spy(self: MultiFidelityGaussianProcessSearch, request: SuggestRequest) -> Any:
        seen.append(request)
        return real(self, request)

    monkeypatch.setattr(MultiFidelityGaussianProcessSearch, "suggest", spy)
    client.create_study(
        "mf",
        {
            "parameters": SPACE,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "gp_mf",
            "seed": 1,
            "initial_trials": 4,
            "max_trials": 12,
            "early_stopping": dict(ASHA, max_resource=9),
        },
    )
    held = client.suggest("mf", "held")[0]  # stays running with two reports
    held.report(1, {"loss": 3.0})
    held.report(2, {"loss": 2.5})
    stopped = 0
    for _ in range(10):
        (trial,) = client.suggest("mf", "w")
        a, b = trial.params["a"], trial.params["b"]
        for step in range(1, 10):
            if trial.report(step, {"loss": final_loss(a, b) + 1.0 / step}):
                stopped += 1
                break
        trial.complete()
    assert stopped > 0
    last = seen[-1]
    assert len(last.observations) == 9  # the last ask came before the last trial ended
    for obs in last.observations:
        steps = [s for s, _ in obs.curve]
        assert steps == list(range(1, len(steps) + 1)) and steps, obs
        if obs.state is TrialState.STOPPED_EARLY:
            assert steps[-1] < 9
        else:
            assert obs.state is TrialState.COMPLETED and steps[-1] == 9
    assert list(last.pending_curves) == [((1, 3.0), (2, 2.5))]
    trials = client.list_trials("mf")
    assert sum(t.state == "stopped_early" for t in trials) == stopped
