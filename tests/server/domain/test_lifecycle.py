"""The trial lifecycle's rules on their own: no database, no server."""

from __future__ import annotations

import pytest

from tunewire.server.domain import lifecycle
from tunewire.server.domain.early_stopping import StopDecision
from tunewire.server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    LeaseExpired,
    StepAlreadyReported,
    TrialFinished,
    TrialNotHeld,
    TrialNotStarted,
)
from tunewire.server.domain.lifecycle import TrialTally
from tunewire.server.domain.study import (
    Measurement,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)

SPEC = StudySpec.from_dict(
    {
        "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
        "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "acc", "goal": "maximize"}],
        "max_trials": 4,
        "max_concurrent_trials": 2,
        "max_trial_retries": 1,
    }
)


def M(metrics: dict[str, float], step: int = 0) -> Measurement:
    return Measurement(step, metrics)


def running(worker: str = "w1", **changes: object) -> Trial:
    trial = lifecycle.new_trial({"x": 0.5}, TrialSource.ALGORITHM, 10.0)
    trial = lifecycle.start(trial, worker, 11.0, 71.0)
    for key, value in changes.items():
        setattr(trial, key, value)
    return trial


def test_a_new_trial_waits_then_starts_with_a_lease() -> None:
    trial = lifecycle.new_trial({"x": 0.5}, TrialSource.USER, 10.0)
    assert trial.state is TrialState.REQUESTED and trial.create_time == 10.0
    started = lifecycle.start(trial, "w1", 11.0, 71.0)
    assert (started.state, started.worker_id, started.start_time, started.lease_expires) == (
        TrialState.ACTIVE,
        "w1",
        11.0,
        71.0,
    )
    assert trial.state is TrialState.REQUESTED  # transitions return new trials
    assert lifecycle.renew(started, 99.0).lease_expires == 99.0


def test_only_the_holder_of_an_active_trial_may_act_on_it() -> None:
    trial = running("w1")
    assert lifecycle.held(trial, "w1", "report on", 12.0) is trial
    with pytest.raises(TrialNotHeld, match="held by worker 'w1', not 'w2'"):
        lifecycle.held(trial, "w2", "report on", 12.0)
    with pytest.raises(TrialNotStarted, match="SuggestTrials"):
        lifecycle.held(lifecycle.release(trial), "w1", "complete", 12.0)
    with pytest.raises(LeaseExpired, match="lease_timeout_seconds") as lost:
        lifecycle.held(lifecycle.expire(trial, 80.0), "w1", "heartbeat", 272.0)
    # The lease ended at 71 s, the trial was marked lost at 80 s: the age is the lease's.
    assert "1970-01-01 00:01:11 UTC" in str(lost.value) and "(3 min 21 s ago)" in str(lost.value)
    with pytest.raises(TrialFinished, match="already failed"):
        lifecycle.held(lifecycle.fail(trial, "boom", 20.0), "w1", "complete", 21.0)
    # Each is a failed precondition at the edge.
    assert issubclass(TrialNotHeld, FailedPrecondition)
    assert issubclass(LeaseExpired, FailedPrecondition)


def test_an_expired_lease_loses_the_trial_and_queues_a_retry_while_retries_last() -> None:
    trial = running("w1")
    assert not lifecycle.lease_expired(trial, 71.0)
    assert lifecycle.lease_expired(trial, 71.5)
    lost = lifecycle.expire(trial, 72.0)
    assert lost.state is TrialState.LOST and lost.end_time == 72.0
    assert "lease expired at 1970-01-01 00:01:11 UTC" in lost.reason and "'w1'" in lost.reason
    again = lifecycle.retry(lost, 72.0, SPEC.max_trial_retries)
    assert again is not None
    assert (again.state, again.source, again.retry_of, again.attempt) == (
        TrialState.REQUESTED,
        TrialSource.RETRY,
        lost.id,
        1,
    )
    assert again.parameters == trial.parameters
    assert lifecycle.retry(running(attempt=1), 72.0, SPEC.max_trial_retries) is None


def test_completion_takes_the_final_metrics_or_the_last_report() -> None:
    trial = running()
    done = lifecycle.complete(trial, SPEC, M({"loss": 0.5, "acc": 0.9}), "", None, 20.0)
    assert done.state is TrialState.COMPLETED and done.final_metrics == {"loss": 0.5, "acc": 0.9}
    assert done.end_time == 20.0 and done.lease_expires == 0.0
    last = Measurement(3, {"loss": 0.4, "acc": 0.8}, elapsed_seconds=7.5)
    from_last = lifecycle.complete(trial, SPEC, None, "", last, 20.0)
    assert from_last.final_metrics == last.metrics
    assert (from_last.final_step, from_last.final_elapsed_seconds) == (3, 7.5)
    given = lifecycle.complete(trial, SPEC, M({"loss": 0.1, "acc": 1.0}, step=9), "", last, 20.0)
    assert (given.final_step, given.final_elapsed_seconds) == (9, 7.5)
    stopped = lifecycle.stop(trial, StopDecision(3, "median", "worse"))
    assert lifecycle.complete(stopped, SPEC, None, "", last, 20.0).state is TrialState.STOPPED_EARLY


def test_completion_refuses_what_cannot_be_a_result() -> None:
    trial = running()
    with pytest.raises(InvalidArgument, match="no reports"):
        lifecycle.complete(trial, SPEC, None, "", None, 20.0)
    with pytest.raises(InvalidArgument, match=r"lacks the study's metrics \['acc'\]"):
        lifecycle.complete(trial, SPEC, M({"loss": 0.5}), "", None, 20.0)
    with pytest.raises(InvalidArgument, match="not finite"):
        lifecycle.complete(
            trial, SPEC, M({"loss": 0.5, "acc": 0.9, "x": float("nan")}), "", None, 0
        )


def test_a_non_finite_objective_or_a_reason_makes_the_trial_infeasible() -> None:
    trial = running()
    nan = lifecycle.complete(trial, SPEC, M({"loss": float("nan"), "acc": 1.0}), "", None, 20.0)
    assert nan.state is TrialState.INFEASIBLE and nan.final_metrics is None
    assert "non-finite" in nan.reason
    oom = lifecycle.complete(trial, SPEC, None, "out of memory", None, 20.0)
    assert (oom.state, oom.reason) == (TrialState.INFEASIBLE, "out of memory")


def test_a_retried_completion_is_recognised() -> None:
    done = lifecycle.complete(running("w1"), SPEC, M({"loss": 0.5, "acc": 0.9}), "", None, 20.0)
    assert lifecycle.repeats_completion(done, "w1", M({"loss": 0.5, "acc": 0.9}), "")
    assert lifecycle.repeats_completion(done, "w1", None, "")
    assert not lifecycle.repeats_completion(done, "w2", M({"loss": 0.5, "acc": 0.9}), "")
    assert not lifecycle.repeats_completion(done, "w1", M({"loss": 0.6, "acc": 0.9}), "")
    assert not lifecycle.repeats_completion(done, "w1", None, "oom")
    assert not lifecycle.repeats_completion(running("w1"), "w1", None, "")


def test_release_queues_the_trial_again_from_scratch() -> None:
    trial = lifecycle.stop(running("w1"), StopDecision(2, "patience", "flat"))
    released = lifecycle.release(trial)
    assert released.state is TrialState.REQUESTED
    assert (released.worker_id, released.lease_expires, released.start_time) == ("", 0.0, 0.0)
    assert released.stop_decision is None and released.measurements == []


def test_a_recorded_result_is_a_completed_user_trial() -> None:
    trial = lifecycle.recorded({"x": 0.1}, SPEC, M({"loss": 1.0, "acc": 0.5}), 5.0)
    assert (trial.state, trial.source, trial.start_time, trial.end_time) == (
        TrialState.COMPLETED,
        TrialSource.USER,
        5.0,
        5.0,
    )
    with pytest.raises(InvalidArgument, match="lacks"):
        lifecycle.recorded({"x": 0.1}, SPEC, M({"loss": 1.0}), 5.0)
    with pytest.raises(InvalidArgument, match="not finite"):
        lifecycle.recorded({"x": 0.1}, SPEC, M({"loss": float("inf"), "acc": 0.5}), 5.0)


def test_reports_need_an_objective_and_a_repeated_step_its_values() -> None:
    lifecycle.check_report(SPEC, Measurement(0, {"acc": 0.5}))
    with pytest.raises(InvalidArgument, match="none of the study's metrics"):
        lifecycle.check_report(SPEC, Measurement(0, {"other": 0.5}))
    first = Measurement(2, {"loss": 1.0})
    lifecycle.check_same_report(7, first, Measurement(2, {"loss": 1.0}))
    with pytest.raises(StepAlreadyReported, match="step 2 of trial 7"):
        lifecycle.check_same_report(7, first, Measurement(2, {"loss": 2.0}))


@pytest.mark.parametrize(
    ("tally", "wanted", "room"),
    [
        (TrialTally(created=0, lost=0, requested=0, active=0), 5, 2),  # concurrency cap
        (TrialTally(created=3, lost=0, requested=0, active=0), 5, 1),  # budget
        (TrialTally(created=5, lost=2, requested=1, active=1), 5, 1),  # lost and queued free
        (TrialTally(created=4, lost=0, requested=0, active=2), 1, 0),
        (TrialTally(created=9, lost=0, requested=0, active=0), 1, 0),  # never negative
    ],
)
def test_room_for_new_trials_keeps_to_the_budget_and_the_concurrency_cap(
    tally: TrialTally, wanted: int, room: int
) -> None:
    assert lifecycle.new_trial_room(SPEC, tally, wanted) == room


def test_room_is_shared_out_in_order() -> None:
    assert lifecycle.share_out([2, 1, 3], 4) == [2, 1, 1]
    assert lifecycle.share_out([2, 1], 0) == [0, 0]


def test_a_study_completes_when_its_budget_is_spent_and_nothing_runs() -> None:
    spent = TrialTally(created=4, lost=0, requested=0, active=0)
    assert lifecycle.budget_spent(SPEC, StudyState.ACTIVE, spent)
    assert not lifecycle.budget_spent(SPEC, StudyState.STOPPED, spent)
    assert not lifecycle.budget_spent(SPEC, StudyState.ACTIVE, TrialTally(4, 0, 0, 1))
    assert not lifecycle.budget_spent(SPEC, StudyState.ACTIVE, TrialTally(5, 1, 1, 0))
    unlimited = StudySpec.from_dict({**SPEC.to_dict(), "max_trials": 0})  # type: ignore[dict-item]
    assert not lifecycle.budget_spent(unlimited, StudyState.ACTIVE, spent)
