"""The study spec's own rules: defaults, limits, the lease it gives, its canonical form, and
the plain value types around it. No database, no server."""

from __future__ import annotations

from typing import Any

import pytest

from tunewire.server.domain.early_stopping import EarlyStoppingPolicy
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import (
    MAX_GRID_RESOLUTION,
    MAX_LEASE_SECONDS,
    MAX_METRICS,
    MAX_TRIAL_RETRIES,
    MAX_TRIALS,
    MIN_LEASE_SECONDS,
)
from tunewire.server.domain.space import SearchSpace
from tunewire.server.domain.study import (
    DEFAULT_ALGORITHM,
    DEFAULT_GRID_RESOLUTION,
    DEFAULT_LEASE_TIMEOUT_S,
    DEFAULT_MAX_TRIAL_RETRIES,
    FINISHED_STATES,
    MAX_SEED,
    Goal,
    MetricSpec,
    StudySpec,
    Trial,
    TrialSource,
    TrialState,
)

SPACE = SearchSpace.from_dicts([{"name": "x", "type": "float", "min": 0.0, "max": 1.0}])
LOSS = MetricSpec("loss", Goal.MINIMIZE)


def create(**settings: Any) -> StudySpec:
    return StudySpec.create(SPACE, [LOSS], **settings)


def test_zero_and_absent_settings_take_the_defaults() -> None:
    spec = create()
    assert spec.algorithm == DEFAULT_ALGORITHM
    assert spec.lease_timeout_seconds == DEFAULT_LEASE_TIMEOUT_S
    assert spec.max_trial_retries == DEFAULT_MAX_TRIAL_RETRIES
    assert spec.grid_resolution == DEFAULT_GRID_RESOLUTION
    assert spec.early_stopping == EarlyStoppingPolicy("none", {}, 0)
    assert (spec.max_trials, spec.max_concurrent_trials, spec.initial_trials) == (0, 0, 0)
    # The dict form reads the same defaults; the wire's zeros mean them too.
    raw = {"parameters": SPACE.to_dicts(), "metrics": [{"name": "loss", "goal": "minimize"}]}
    assert StudySpec.from_dict(raw) == spec
    assert create(algorithm="", lease_timeout_seconds=0.0, grid_resolution=0) == spec


def test_max_trial_retries_zero_is_kept_and_none_is_the_default() -> None:
    assert create(max_trial_retries=0).max_trial_retries == 0
    assert create(max_trial_retries=None).max_trial_retries == DEFAULT_MAX_TRIAL_RETRIES


def test_a_lease_ends_one_lease_timeout_after_it_is_taken() -> None:
    assert create().lease_end(1000.0) == 1000.0 + DEFAULT_LEASE_TIMEOUT_S
    assert create(lease_timeout_seconds=30.0).lease_end(1000.0) == 1030.0


@pytest.mark.parametrize("lease", [MIN_LEASE_SECONDS, 30.0, MAX_LEASE_SECONDS])
def test_a_lease_from_one_second_to_thirty_days_is_taken(lease: float) -> None:
    assert create(lease_timeout_seconds=lease).lease_timeout_seconds == lease


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"lease_timeout_seconds": 0.5}, "lease_timeout_seconds must be between 1 and"),
        ({"lease_timeout_seconds": MAX_LEASE_SECONDS + 1}, "lease_timeout_seconds"),
        ({"lease_timeout_seconds": -1.0}, "lease_timeout_seconds"),
        ({"max_trials": -1}, "max_trials"),
        ({"max_trials": MAX_TRIALS + 1}, "max_trials"),
        ({"max_concurrent_trials": MAX_TRIALS + 1}, "max_concurrent_trials"),
        ({"initial_trials": -1}, "initial_trials"),
        ({"max_trial_retries": MAX_TRIAL_RETRIES + 1}, "max_trial_retries"),
        ({"max_trial_retries": -1}, "max_trial_retries"),
        ({"grid_resolution": 1}, "grid_resolution"),
        ({"grid_resolution": MAX_GRID_RESOLUTION + 1}, "grid_resolution"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"seed": -MAX_SEED - 1}, "seed"),
        ({"algorithm": "tpe"}, "unknown algorithm 'tpe'"),
        ({"early_stopping": EarlyStoppingPolicy("medain")}, "did you mean 'median'"),
    ],
)
def test_settings_beyond_their_limits_are_refused(settings: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        create(**settings)


def test_settings_at_their_limits_are_taken() -> None:
    spec = create(
        max_trials=MAX_TRIALS,
        max_concurrent_trials=MAX_TRIALS,
        initial_trials=MAX_TRIALS,
        max_trial_retries=MAX_TRIAL_RETRIES,
        grid_resolution=MAX_GRID_RESOLUTION,
        seed=-MAX_SEED,
    )
    assert (spec.max_trials, spec.grid_resolution, spec.seed) == (
        MAX_TRIALS,
        MAX_GRID_RESOLUTION,
        -MAX_SEED,
    )
    assert create(grid_resolution=2).grid_resolution == 2


def test_metrics_are_one_to_the_limit_with_distinct_valid_names() -> None:
    with pytest.raises(InvalidArgument, match="at least one metric"):
        StudySpec.create(SPACE, [])
    many = [MetricSpec(f"m{i}", Goal.MINIMIZE) for i in range(MAX_METRICS + 1)]
    with pytest.raises(InvalidArgument, match=f"at most {MAX_METRICS} metrics"):
        StudySpec.create(SPACE, many)
    assert len(StudySpec.create(SPACE, many[:MAX_METRICS]).metrics) == MAX_METRICS
    with pytest.raises(InvalidArgument, match="duplicate metric names"):
        StudySpec.create(SPACE, [LOSS, MetricSpec("loss", Goal.MAXIMIZE)])
    with pytest.raises(InvalidArgument, match="metric name"):
        StudySpec.create(SPACE, [MetricSpec("a loss", Goal.MINIMIZE)])


def test_the_algorithm_name_is_case_blind_and_stored_lower_case() -> None:
    assert create(algorithm="Random").algorithm == "random"


def test_the_first_metric_is_the_primary_one_and_goals_order_values() -> None:
    acc = MetricSpec("acc", Goal.MAXIMIZE)
    spec = StudySpec.create(SPACE, [acc, LOSS])
    assert spec.primary_metric == acc
    assert acc.better(0.9, 0.8) and not acc.better(0.8, 0.8)
    assert LOSS.better(0.1, 0.2) and not LOSS.better(0.2, 0.1)


@pytest.mark.parametrize(("alias", "goal"), [("min", Goal.MINIMIZE), ("MAXIMISE", Goal.MAXIMIZE)])
def test_goal_aliases_are_read(alias: str, goal: Goal) -> None:
    raw = {"parameters": SPACE.to_dicts(), "metrics": [{"name": "m", "goal": alias}]}
    assert StudySpec.from_dict(raw).primary_metric.goal is goal


def test_the_canonical_form_ignores_the_order_settings_were_given_in() -> None:
    a = create(max_trials=10, seed=3, early_stopping=EarlyStoppingPolicy("median"))
    b = StudySpec.from_dict(dict(reversed(list(a.to_dict().items()))))
    assert b == a and b.to_json() == a.to_json()
    assert a.early_stopping.settings["min_completed_trials"] == 5  # the rule's defaults


def test_finished_states_are_the_four_final_ones() -> None:
    assert {s for s in TrialState if s.finished} == FINISHED_STATES
    assert not TrialState.LOST.finished and not TrialState.ACTIVE.finished


def test_a_trial_evolves_into_a_copy_and_refuses_unknown_fields() -> None:
    trial = Trial("s", 1, {"x": 0.5}, TrialState.ACTIVE, TrialSource.ALGORITHM, worker_id="w")
    later = trial.evolve(lease_expires=5.0)
    assert later.lease_expires == 5.0 and trial.lease_expires == 0.0
    assert later.worker_id == "w" and later is not trial
    with pytest.raises(TypeError, match="lease_expiry"):
        trial.evolve(lease_expiry=5.0)
