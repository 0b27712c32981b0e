"""Conversion between protobuf messages and domain objects (the wire edge only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import MAX_STATE_FILTER, shown
from tunewire.server.domain.space import (
    Condition,
    ParameterKind,
    ParameterSpec,
    ParamValue,
    SearchSpace,
)
from tunewire.server.domain.study import (
    EarlyStoppingPolicy,
    Goal,
    Measurement,
    MetricSpec,
    StopDecision,
    Study,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)
from tunewire.server.service.changes import TrialCurve
from tunewire.v1 import study_pb2 as pb

_SCALE_TO_LOG = {pb.SCALE_UNSPECIFIED: False, pb.SCALE_LINEAR: False, pb.SCALE_LOG: True}
_GOALS = {pb.GOAL_MINIMIZE: Goal.MINIMIZE, pb.GOAL_MAXIMIZE: Goal.MAXIMIZE}
_GOALS_PB = {v: k for k, v in _GOALS.items()}
TRIAL_STATES = {
    pb.TRIAL_STATE_REQUESTED: TrialState.REQUESTED,
    pb.TRIAL_STATE_ACTIVE: TrialState.ACTIVE,
    pb.TRIAL_STATE_COMPLETED: TrialState.COMPLETED,
    pb.TRIAL_STATE_STOPPED_EARLY: TrialState.STOPPED_EARLY,
    pb.TRIAL_STATE_INFEASIBLE: TrialState.INFEASIBLE,
    pb.TRIAL_STATE_FAILED: TrialState.FAILED,
    pb.TRIAL_STATE_LOST: TrialState.LOST,
}
_TRIAL_STATES_PB = {v: k for k, v in TRIAL_STATES.items()}
_STUDY_STATES_PB = {
    StudyState.ACTIVE: pb.STUDY_STATE_ACTIVE,
    StudyState.STOPPED: pb.STUDY_STATE_STOPPED,
    StudyState.COMPLETED: pb.STUDY_STATE_COMPLETED,
}
_SOURCES_PB = {
    TrialSource.ALGORITHM: pb.TRIAL_SOURCE_ALGORITHM,
    TrialSource.USER: pb.TRIAL_SOURCE_USER,
    TrialSource.RETRY: pb.TRIAL_SOURCE_RETRY,
}
_COUNT_FIELDS = {
    TrialState.REQUESTED: "requested",
    TrialState.ACTIVE: "active",
    TrialState.COMPLETED: "completed",
    TrialState.STOPPED_EARLY: "stopped_early",
    TrialState.INFEASIBLE: "infeasible",
    TrialState.FAILED: "failed",
    TrialState.LOST: "lost",
}


def _timestamp(seconds: float) -> Timestamp | None:
    if not seconds:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def value_from_pb(value: pb.ParameterValue) -> ParamValue:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "integer_value":
        return value.integer_value
    if kind == "string_value":
        return value.string_value
    raise InvalidArgument(
        "a parameter value is empty: set number_value, integer_value or string_value"
    )


def value_to_pb(value: ParamValue) -> pb.ParameterValue:
    if isinstance(value, str):
        return pb.ParameterValue(string_value=value)
    if isinstance(value, int):
        return pb.ParameterValue(integer_value=value)
    return pb.ParameterValue(number_value=float(value))


def params_from_pb(params: Mapping[str, pb.ParameterValue]) -> dict[str, ParamValue]:
    return {name: value_from_pb(v) for name, v in params.items()}


def _log_scale(name: str, scale: int) -> bool:
    if scale not in _SCALE_TO_LOG:
        raise InvalidArgument(
            f"parameter {shown(name)}: unknown scale {scale}; use SCALE_LINEAR or SCALE_LOG"
        )
    return _SCALE_TO_LOG[scale]  # type: ignore[index]


def _parameter_from_pb(p: pb.ParameterSpec) -> ParameterSpec:
    condition = None
    if p.HasField("condition"):
        c = p.condition
        condition = Condition(
            parent=c.parent,
            values=tuple(value_from_pb(v) for v in c.values),
            min_value=c.min_value if c.HasField("min_value") else None,
            max_value=c.max_value if c.HasField("max_value") else None,
        )
    domain = p.WhichOneof("domain")
    if domain == "float_range":
        r = p.float_range
        return ParameterSpec(
            p.name,
            ParameterKind.FLOAT,
            r.min_value,
            r.max_value,
            _log_scale(p.name, r.scale),
            condition=condition,
        )
    if domain == "integer_range":
        i = p.integer_range
        return ParameterSpec(
            p.name,
            ParameterKind.INTEGER,
            float(i.min_value),
            float(i.max_value),
            _log_scale(p.name, i.scale),
            condition=condition,
        )
    if domain == "categorical":
        return ParameterSpec(
            p.name,
            ParameterKind.CATEGORICAL,
            choices=tuple(p.categorical.values),
            condition=condition,
        )
    if domain == "discrete":
        return ParameterSpec(
            p.name, ParameterKind.DISCRETE, choices=tuple(p.discrete.values), condition=condition
        )
    raise InvalidArgument(
        f"parameter {shown(p.name)} has no domain: set float_range, integer_range, "
        "categorical or discrete"
    )


def _policy_from_pb(policy: pb.EarlyStoppingPolicy) -> EarlyStoppingPolicy:
    rule = policy.WhichOneof("rule")
    if rule is None:
        if policy.max_step:
            raise InvalidArgument("early_stopping.max_step needs a rule")
        return EarlyStoppingPolicy()
    message = getattr(policy, rule)
    settings = {f.name: value for f, value in message.ListFields()}
    if rule == "threshold":
        # A bound has no "default": 0 on the wire (which proto3 does not send) is 0.
        settings.setdefault("bound", message.bound)
    return EarlyStoppingPolicy(rule, settings, policy.max_step)


def spec_from_pb(spec: pb.StudySpec) -> StudySpec:
    """Validates and converts a StudySpec. Raises InvalidArgument saying what to fix."""
    metrics = []
    for m in spec.metrics:
        if m.goal not in _GOALS:
            raise InvalidArgument(
                f"metric {shown(m.name)}: set goal to GOAL_MINIMIZE or GOAL_MAXIMIZE"
            )
        metrics.append(MetricSpec(m.name, _GOALS[m.goal]))
    space = SearchSpace.build([_parameter_from_pb(p) for p in spec.parameters])
    return StudySpec.create(
        space,
        metrics,
        algorithm=spec.algorithm,
        seed=spec.seed,
        early_stopping=_policy_from_pb(spec.early_stopping),
        max_trials=spec.max_trials,
        max_concurrent_trials=spec.max_concurrent_trials,
        lease_timeout_seconds=spec.lease_timeout_seconds,
        max_trial_retries=spec.max_trial_retries if spec.HasField("max_trial_retries") else None,
        initial_trials=spec.initial_trials,
        grid_resolution=spec.grid_resolution,
    )


def _parameter_to_pb(p: ParameterSpec) -> pb.ParameterSpec:
    out = pb.ParameterSpec(name=p.name)
    scale = pb.SCALE_LOG if p.log else pb.SCALE_LINEAR
    if p.kind is ParameterKind.FLOAT:
        out.float_range.CopyFrom(pb.FloatRange(min_value=p.low, max_value=p.high, scale=scale))
    elif p.kind is ParameterKind.INTEGER:
        out.integer_range.CopyFrom(
            pb.IntegerRange(min_value=int(p.low), max_value=int(p.high), scale=scale)
        )
    elif p.kind is ParameterKind.CATEGORICAL:
        out.categorical.values.extend(str(v) for v in p.choices)
    else:
        out.discrete.values.extend(float(v) for v in p.choices)
    if p.condition is not None:
        c = p.condition
        cond = pb.Condition(parent=c.parent, values=[value_to_pb(v) for v in c.values])
        if c.min_value is not None:
            cond.min_value = c.min_value
        if c.max_value is not None:
            cond.max_value = c.max_value
        out.condition.CopyFrom(cond)
    return out


def _setting_value(field: Any, value: float) -> bool | int | float:
    """A policy setting in the type of its protobuf field."""
    if field.type == field.TYPE_DOUBLE:
        return float(value)
    if field.type == field.TYPE_BOOL:
        return bool(value)
    return int(value)


def spec_to_pb(spec: StudySpec) -> pb.StudySpec:
    out = pb.StudySpec(
        parameters=[_parameter_to_pb(p) for p in spec.space.parameters],
        metrics=[pb.MetricSpec(name=m.name, goal=_GOALS_PB[m.goal]) for m in spec.metrics],
        algorithm=spec.algorithm,
        seed=spec.seed,
        max_trials=spec.max_trials,
        max_concurrent_trials=spec.max_concurrent_trials,
        lease_timeout_seconds=spec.lease_timeout_seconds,
        max_trial_retries=spec.max_trial_retries,
        initial_trials=spec.initial_trials,
        grid_resolution=spec.grid_resolution,
    )
    policy = spec.early_stopping
    out.early_stopping.max_step = policy.max_step
    if policy.rule != "none":
        message = getattr(out.early_stopping, policy.rule)
        for key, value in policy.settings.items():
            field = message.DESCRIPTOR.fields_by_name[key]
            setattr(message, key, _setting_value(field, value))
        message.SetInParent()
    return out


def study_to_pb(study: Study) -> pb.Study:
    counts = pb.TrialCounts(**{_COUNT_FIELDS[s]: n for s, n in study.trial_counts.items()})
    return pb.Study(
        name=study.name,
        spec=None if study.spec is None else spec_to_pb(study.spec),
        state=_STUDY_STATES_PB[study.state],
        create_time=_timestamp(study.create_time),
        trial_counts=counts,
        update_time=_timestamp(study.update_time),
    )


def check_round_trip(spec: StudySpec) -> None:
    """A spec must survive its wire form unchanged: what is stored is what clients read."""
    try:
        again = spec_from_pb(spec_to_pb(spec))
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidArgument(f"the spec cannot be written in the wire form: {exc}") from None
    if again != spec:
        raise InvalidArgument("the spec does not read back the same from its wire form")


def measurement_from_pb(m: pb.Measurement) -> Measurement:
    return Measurement(step=m.step, metrics=dict(m.metrics), elapsed_seconds=m.elapsed_seconds)


def final_measurement_from(request: Any) -> Measurement | None:
    """The final measurement of a CompleteTrial or AddTrial request; None when not given."""
    if not request.HasField("final_measurement"):
        return None
    return measurement_from_pb(request.final_measurement)


def measurement_to_pb(m: Measurement) -> pb.Measurement:
    return pb.Measurement(
        step=m.step,
        metrics=dict(m.metrics),
        elapsed_seconds=m.elapsed_seconds,
        time=_timestamp(m.time),
    )


def stop_to_pb(decision: StopDecision | None) -> pb.StopDecision | None:
    if decision is None:
        return None
    return pb.StopDecision(step=decision.step, rule=decision.rule, reason=decision.reason)


def trial_to_pb(t: Trial) -> pb.Trial:
    out = pb.Trial(
        study_name=t.study_name,
        id=t.id,
        parameters={k: value_to_pb(v) for k, v in t.parameters.items()},
        state=_TRIAL_STATES_PB[t.state],
        worker_id=t.worker_id,
        measurements=[measurement_to_pb(m) for m in t.measurements],
        reason=t.reason,
        stop_decision=stop_to_pb(t.stop_decision),
        source=_SOURCES_PB[t.source],
        retry_of=t.retry_of,
        create_time=_timestamp(t.create_time),
        start_time=_timestamp(t.start_time),
        end_time=_timestamp(t.end_time),
    )
    if t.state is TrialState.ACTIVE:
        out.lease_expire_time.CopyFrom(_timestamp(t.lease_expires))
    if t.final_metrics is not None:
        step = t.final_step
        if step is None:  # a trial finished before final steps were kept
            step = t.measurements[-1].step if t.measurements else 0
        out.final_measurement.CopyFrom(
            pb.Measurement(
                step=step,
                metrics=dict(t.final_metrics),
                elapsed_seconds=t.final_elapsed_seconds or 0.0,
                time=_timestamp(t.end_time),
            )
        )
    return out


def trial_states_from_pb(states: Sequence[int]) -> list[TrialState]:
    """A ListTrials filter: each state once, in the order first given."""
    if len(states) > MAX_STATE_FILTER:
        raise InvalidArgument(
            f"states has {len(states):,} entries; at most {MAX_STATE_FILTER} (there are "
            f"{len(TRIAL_STATES)} states)"
        )
    by_number = {int(k): v for k, v in TRIAL_STATES.items()}
    out = []
    for s in dict.fromkeys(states):
        if s not in by_number:
            raise InvalidArgument(f"unknown trial state {shown(s)} in the filter")
        out.append(by_number[s])
    return out


def curve_to_pb(curve: TrialCurve) -> pb.TrialCurve:
    return pb.TrialCurve(
        trial_id=curve.trial_id, metric=curve.metric, steps=curve.steps, values=curve.values
    )
