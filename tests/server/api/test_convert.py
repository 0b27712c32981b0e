"""Wire <-> domain conversions on their own: specs with every parameter kind, conditions and
early-stopping rule survive the round trip; trials, measurements, studies and parameter
values come out on the wire in the type and shape the domain gave. No server."""

from __future__ import annotations

from typing import Any

import pytest

from tunewire.server.api import convert
from tunewire.server.domain.early_stopping import StopDecision
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.study import (
    Measurement,
    Study,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)
from tunewire.server.service.changes import TrialCurve
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api

EVERY_KIND = [
    {"name": "lr", "type": "float", "min": 1e-5, "max": 0.1, "scale": "log"},
    {"name": "dropout", "type": "float", "min": 0.0, "max": 0.5},
    {"name": "layers", "type": "int", "min": 1, "max": 4},
    {"name": "units", "type": "int", "min": 16, "max": 1024, "scale": "log"},
    {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
    {"name": "batch", "type": "discrete", "values": [16, 32, 64]},
    # Conditions: on a categorical value, on a numeric range, on discrete values.
    {
        "name": "momentum",
        "type": "float",
        "min": 0.0,
        "max": 0.99,
        "condition": {"parent": "opt", "values": ["sgd"]},
    },
    {
        "name": "width",
        "type": "int",
        "min": 8,
        "max": 64,
        "condition": {"parent": "layers", "min": 2, "max": 3},
    },
    {
        "name": "ratio",
        "type": "discrete",
        "values": [0.5, 1, 2],
        "condition": {"parent": "batch", "values": [32, 64]},
    },
    {
        "name": "nesterov",
        "type": "categorical",
        "values": ["yes", "no"],
        "condition": {"parent": "momentum", "min": 0.5},
    },
]
RULES = [
    {},
    {"rule": "median", "min_completed_trials": 3, "use_step_values": True, "max_step": 9},
    {"rule": "successive_halving", "min_resource": 2, "reduction_factor": 2.5},
    {"rule": "patience", "patience_steps": 4, "min_delta": 0.01},
    {"rule": "threshold", "bound": 0.75, "after_step": 0},
]


def full_spec(early_stopping: dict[str, Any]) -> StudySpec:
    return StudySpec.from_dict(
        {
            "parameters": EVERY_KIND,
            "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "acc", "goal": "max"}],
            "algorithm": "sobol",
            "seed": -7,
            "early_stopping": early_stopping,
            "max_trials": 50,
            "max_concurrent_trials": 4,
            "lease_timeout_seconds": 30.5,
            "max_trial_retries": 0,
            "initial_trials": 3,
            "grid_resolution": 7,
        }
    )


@pytest.mark.parametrize("rule", RULES, ids=[r.get("rule", "none") for r in RULES])
def test_a_spec_survives_the_wire_and_its_bytes(rule: dict[str, Any]) -> None:
    spec = full_spec(rule)
    message = convert.spec_to_pb(spec)
    assert convert.spec_from_pb(message) == spec
    assert convert.spec_from_pb(pb.StudySpec.FromString(message.SerializeToString())) == spec
    convert.check_round_trip(spec)  # what CreateStudy checks
    # The wire form of a spec is a fixed point: written again, the same message.
    assert convert.spec_to_pb(convert.spec_from_pb(message)) == message


def test_the_spec_on_the_wire_has_each_kind_in_its_field() -> None:
    message = convert.spec_to_pb(full_spec({}))
    by_name = {p.name: p for p in message.parameters}
    assert by_name["lr"].float_range.scale == pb.SCALE_LOG
    assert by_name["dropout"].float_range.scale == pb.SCALE_LINEAR
    assert by_name["units"].integer_range.max_value == 1024
    assert list(by_name["opt"].categorical.values) == ["sgd", "adam"]
    assert list(by_name["batch"].discrete.values) == [16.0, 32.0, 64.0]
    width = by_name["width"].condition
    assert (width.parent, width.min_value, width.max_value) == ("layers", 2.0, 3.0)
    assert not by_name["momentum"].condition.HasField("min_value")
    assert [convert.value_from_pb(v) for v in by_name["momentum"].condition.values] == ["sgd"]
    assert message.HasField("max_trial_retries") and message.max_trial_retries == 0
    assert [m.goal for m in message.metrics] == [pb.GOAL_MINIMIZE, pb.GOAL_MAXIMIZE]


def test_unset_wire_fields_read_as_the_defaults() -> None:
    message = pb.StudySpec(
        parameters=[pb.ParameterSpec(name="x", float_range=pb.FloatRange(max_value=1))],
        metrics=[pb.MetricSpec(name="loss", goal=pb.GOAL_MINIMIZE)],
    )
    spec = convert.spec_from_pb(message)
    assert spec == StudySpec.from_dict(
        {
            "parameters": [{"name": "x", "type": "float", "min": 0, "max": 1}],
            "metrics": [{"name": "loss", "goal": "minimize"}],
        }
    )
    # SCALE_UNSPECIFIED reads as linear and is written back as SCALE_LINEAR.
    assert convert.spec_to_pb(spec).parameters[0].float_range.scale == pb.SCALE_LINEAR


@pytest.mark.parametrize(
    ("parameter", "needle"),
    [
        (pb.ParameterSpec(name="x"), "has no domain"),
        (
            pb.ParameterSpec(name="x", float_range=pb.FloatRange(max_value=1, scale=9)),
            "unknown scale 9",
        ),
    ],
)
def test_a_parameter_the_wire_leaves_ambiguous_is_refused(
    parameter: pb.ParameterSpec, needle: str
) -> None:
    message = pb.StudySpec(
        parameters=[parameter], metrics=[pb.MetricSpec(name="loss", goal=pb.GOAL_MINIMIZE)]
    )
    with pytest.raises(InvalidArgument, match=needle):
        convert.spec_from_pb(message)


def test_a_metric_without_a_goal_is_refused() -> None:
    message = convert.spec_to_pb(full_spec({}))
    message.metrics[0].goal = pb.GOAL_UNSPECIFIED
    with pytest.raises(InvalidArgument, match="set goal"):
        convert.spec_from_pb(message)


@pytest.mark.parametrize(
    ("value", "field"),
    [(0.25, "number_value"), (3, "integer_value"), ("adam", "string_value"), (2.0, "number_value")],
)
def test_a_parameter_value_keeps_its_type_both_ways(value: Any, field: str) -> None:
    message = convert.value_to_pb(value)
    assert message.WhichOneof("kind") == field
    back = convert.value_from_pb(message)
    assert back == value and type(back) is type(value)


def test_an_empty_parameter_value_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="parameter value is empty"):
        convert.value_from_pb(pb.ParameterValue())


def test_a_measurement_survives_the_wire_and_carries_the_server_time() -> None:
    m = Measurement(7, {"loss": 0.5, "acc": 0.875}, elapsed_seconds=12.5, time=1_700_000_000.5)
    message = convert.measurement_to_pb(m)
    assert message.time.ToNanoseconds() == 1_700_000_000_500_000_000
    back = convert.measurement_from_pb(message)
    assert (back.step, dict(back.metrics), back.elapsed_seconds) == (7, dict(m.metrics), 12.5)
    assert back.time == 0.0  # a client's time is never read: the server stamps reports
    assert not convert.measurement_to_pb(Measurement(0, {"loss": 1.0})).HasField("time")


def test_a_final_measurement_is_read_only_when_given() -> None:
    assert convert.final_measurement_from(api.CompleteTrialRequest()) is None
    request = api.CompleteTrialRequest(final_measurement=pb.Measurement(step=3, metrics={"l": 1}))
    assert convert.final_measurement_from(request) == Measurement(3, {"l": 1.0})


def finished_trial(**changes: Any) -> Trial:
    reports = [Measurement(s, {"loss": 1.0 / (s + 1)}, 0.5 * s, 100.0 + s) for s in range(3)]
    trial = Trial(
        "s",
        4,
        {"lr": 0.01, "layers": 2, "opt": "adam"},
        TrialState.STOPPED_EARLY,
        TrialSource.RETRY,
        worker_id="w1",
        final_metrics={"loss": 0.25},
        final_step=2,
        final_elapsed_seconds=1.0,
        stop_decision=StopDecision(2, "median", "worse than the median"),
        retry_of=3,
        attempt=1,
        create_time=90.0,
        start_time=95.0,
        end_time=110.0,
        measurements=reports,
    )
    return trial.evolve(**changes)


def test_a_trial_with_reports_goes_on_the_wire_whole() -> None:
    trial = finished_trial()
    message = convert.trial_to_pb(trial)
    assert (message.study_name, message.id, message.worker_id) == ("s", 4, "w1")
    assert message.retry_of == 3
    assert message.state == pb.TRIAL_STATE_STOPPED_EARLY
    assert message.source == pb.TRIAL_SOURCE_RETRY
    assert convert.params_from_pb(message.parameters) == trial.parameters
    back = convert.params_from_pb(message.parameters)
    assert {k: type(v) for k, v in back.items()} == {"lr": float, "layers": int, "opt": str}
    assert [convert.measurement_from_pb(m).step for m in message.measurements] == [0, 1, 2]
    assert [m.time.ToSeconds() for m in message.measurements] == [100, 101, 102]
    final = message.final_measurement
    assert (final.step, dict(final.metrics), final.elapsed_seconds) == (2, {"loss": 0.25}, 1.0)
    assert final.time.ToSeconds() == 110
    assert (message.stop_decision.step, message.stop_decision.rule) == (2, "median")
    assert message.create_time.ToSeconds() == 90 and message.end_time.ToSeconds() == 110
    assert not message.HasField("lease_expire_time")  # only an ACTIVE trial has a lease


def test_only_an_active_trial_shows_its_lease() -> None:
    active = finished_trial(
        state=TrialState.ACTIVE, final_metrics=None, stop_decision=None, lease_expires=200.0
    )
    message = convert.trial_to_pb(active)
    assert message.lease_expire_time.ToSeconds() == 200
    assert not message.HasField("final_measurement") and not message.HasField("stop_decision")


def test_a_final_step_not_kept_is_the_last_reports() -> None:
    message = convert.trial_to_pb(finished_trial(final_step=None, final_elapsed_seconds=None))
    assert message.final_measurement.step == 2
    assert message.final_measurement.elapsed_seconds == 0.0
    bare = finished_trial(final_step=None, measurements=[])
    assert convert.trial_to_pb(bare).final_measurement.step == 0


def test_unset_times_stay_unset_on_the_wire() -> None:
    waiting = Trial("s", 1, {"x": 0.5}, TrialState.REQUESTED, TrialSource.USER)
    message = convert.trial_to_pb(waiting)
    for field in ("create_time", "start_time", "end_time", "lease_expire_time"):
        assert not message.HasField(field), field


def test_every_trial_state_maps_both_ways_and_an_unknown_one_is_refused() -> None:
    for state in TrialState:
        trial = Trial("s", 1, {}, state, TrialSource.USER, lease_expires=100.0)
        wire = convert.trial_to_pb(trial).state
        assert convert.trial_states_from_pb([wire]) == [state]
    with pytest.raises(InvalidArgument, match="unknown trial state 99"):
        convert.trial_states_from_pb([99])


def test_a_study_goes_on_the_wire_with_its_counts_and_without_a_spec_it_cannot_read() -> None:
    spec = full_spec({})
    counts = {TrialState.ACTIVE: 2, TrialState.COMPLETED: 5, TrialState.LOST: 1}
    study = Study("s", spec, StudyState.STOPPED, 50.0, counts, update_time=60.0)
    message = convert.study_to_pb(study)
    assert convert.spec_from_pb(message.spec) == spec
    assert message.state == pb.STUDY_STATE_STOPPED
    assert (message.trial_counts.active, message.trial_counts.completed) == (2, 5)
    assert (message.trial_counts.lost, message.trial_counts.requested) == (1, 0)
    assert message.create_time.ToSeconds() == 50 and message.update_time.ToSeconds() == 60
    unreadable = convert.study_to_pb(Study("old", None, StudyState.ACTIVE, 50.0))
    assert not unreadable.HasField("spec") and not unreadable.HasField("update_time")


def test_a_curve_goes_on_the_wire_as_columns() -> None:
    message = convert.curve_to_pb(TrialCurve(3, "loss", [0, 2], [1.0, 0.5]))
    assert (message.trial_id, message.metric) == (3, "loss")
    assert (list(message.steps), list(message.values)) == ([0, 2], [1.0, 0.5])
