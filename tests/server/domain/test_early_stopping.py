"""Early-stopping rules on hand-made learning curves: exact stop steps."""

from __future__ import annotations

import pytest

from tunewire.server.domain.early_stopping import PeerCurve, decide, rung_steps, validate_policy
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.study import EarlyStoppingPolicy


def first_stop(
    policy: EarlyStoppingPolicy, curve: list[float], peers: list[PeerCurve]
) -> int | None:
    """Feeds the curve report by report; returns the step of the first stop decision."""
    policy = validate_policy(policy)
    for i in range(len(curve)):
        points = [(s, v) for s, v in enumerate(curve[: i + 1])]
        decision = decide(policy, 99, points, peers)
        if decision is not None:
            assert decision.step == i
            return i
    return None


def done(tid: int, values: list[float]) -> PeerCurve:
    return PeerCurve(tid, list(enumerate(values)), completed=True)


def test_median_rule_stops_at_exact_step() -> None:
    peers = [
        done(1, [1.0, 0.8, 0.6, 0.5]),
        done(2, [1.2, 1.0, 0.9, 0.8]),
        done(3, [0.9, 0.7, 0.5, 0.4]),
    ]
    policy = EarlyStoppingPolicy("median", {"min_completed_trials": 3, "grace_period_steps": 1})
    # running averages at step 1: 0.9, 1.1, 0.8 -> median 0.9; the trial's best by step 1 is 1.0
    assert first_stop(policy, [1.0, 1.0, 0.3], peers) == 1
    # a good trial is never stopped
    assert first_stop(policy, [0.9, 0.6, 0.4, 0.3], peers) is None
    # grace period: step 0 is never judged even when bad
    assert first_stop(policy, [5.0], peers) is None


def test_median_rule_on_step_values_stops_sooner() -> None:
    """Optuna's variant: the peers' values at the step, not their running averages."""
    peers = [done(1, [2.0, 0.5, 0.4]), done(2, [2.0, 0.6, 0.5]), done(3, [2.0, 0.7, 0.6])]
    curve = [2.0, 0.8, 0.7]
    averaged = EarlyStoppingPolicy("median", {"min_completed_trials": 3, "grace_period_steps": 1})
    # running averages at step 1: 1.25, 1.3, 1.35 -> median 1.3 > 0.8: continue
    assert first_stop(averaged, curve, peers) is None
    at_step = EarlyStoppingPolicy(
        "median", {"min_completed_trials": 3, "grace_period_steps": 1, "use_step_values": 1}
    )
    # values at step 1: 0.5, 0.6, 0.7 -> median 0.6 < 0.8: stop at step 1
    assert first_stop(at_step, curve, peers) == 1


def test_median_rule_waits_for_enough_completed_trials() -> None:
    peers = [done(1, [0.1, 0.1]), PeerCurve(2, [(0, 0.1), (1, 0.1)], completed=False)]
    policy = EarlyStoppingPolicy("median", {"min_completed_trials": 2, "grace_period_steps": 0})
    assert first_stop(policy, [5.0, 5.0], peers) is None


def test_successive_halving_rungs_and_cutoffs() -> None:
    assert rung_steps(1, 3.0, 0, 30) == [1, 3, 9, 27]
    assert rung_steps(1, 3.0, 10, 30) == [1, 3, 9]
    policy = EarlyStoppingPolicy("successive_halving", {"min_resource": 1, "reduction_factor": 3})
    # six peers reached rung 1 with 0.1..0.6; with the new trial there are 7: keep top 7//3 = 2
    peers = [PeerCurve(i, [(0, 1.0), (1, 0.1 * i)], completed=False) for i in range(1, 7)]
    assert first_stop(policy, [1.0, 0.15, 0.1, 0.1], peers) is None  # 2nd best at rung 1
    assert first_stop(policy, [1.0, 0.25], peers) == 1
    # the first trial at a rung always continues
    assert first_stop(policy, [9.0, 9.0, 9.0, 9.0], []) is None


def test_successive_halving_counts_a_crossed_rung() -> None:
    policy = EarlyStoppingPolicy("successive_halving", {"min_resource": 2, "reduction_factor": 2})
    peers = [PeerCurve(1, [(2, 0.1), (4, 0.05)], completed=True)]
    # reports at steps 0, 3 (crosses rung 2), ...: judged at step 3 against 0.1
    decision = decide(validate_policy(policy), 9, [(0, 1.0), (3, 0.5)], peers)
    assert decision is not None and decision.step == 3 and "rung 2" in decision.reason


def test_patience_rule() -> None:
    policy = EarlyStoppingPolicy("patience", {"patience_steps": 2, "min_delta": 0.01})
    assert first_stop(policy, [1.0, 0.8, 0.7, 0.695, 0.7, 0.6], []) == 4
    assert first_stop(policy, [1.0, 0.9, 0.8, 0.7, 0.6], []) is None


def test_threshold_rule() -> None:
    policy = EarlyStoppingPolicy("threshold", {"bound": 1.0, "after_step": 2})
    assert first_stop(policy, [5.0, 5.0, 0.5, 1.5], []) == 3
    assert first_stop(policy, [5.0, 5.0, 2.0], []) == 2


@pytest.mark.parametrize(
    "rule,settings,needle",
    [
        ("median", {"min_completed_trials": -1}, "whole number from 0 to 10,000,000"),
        ("successive_halving", {"reduction_factor": 1.0}, "reduction_factor must be from 1.1"),
        (
            "successive_halving",
            {"min_resource": 5, "max_resource": 2},
            "max_resource must be >= min_resource",
        ),
        ("patience", {"min_delta": -0.1}, "min_delta"),
        ("threshold", {"after_step": 1}, "give a finite bound"),
        ("median", {"patience_steps": 3}, "has no setting 'patience_steps'"),
        ("median", {"grace_period_step": 3}, "(did you mean 'grace_period_steps'?)"),
        ("median", {"use_step_values": 2}, "use_step_values must be true or false"),
        ("hyperband", {}, "unknown early-stopping rule 'hyperband'"),
        ("medain", {}, "(did you mean 'median'?)"),
    ],
)
def test_invalid_settings_are_rejected(rule: str, settings: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_policy(EarlyStoppingPolicy(rule, settings))
    assert needle in str(err.value)
