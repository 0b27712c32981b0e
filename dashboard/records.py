"""What the dashboard shows of the API's messages, as plain JSON-able values: a study's
summary and spec, and one row per trial."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.message import Message

from tunewire.client.records import STATE_NAMES, params_from_pb
from tunewire.v1 import study_pb2 as pb

STUDY_STATES = {v: k.removeprefix("STUDY_STATE_").lower() for k, v in pb.StudyState.items()}
GOALS = {v: k.removeprefix("GOAL_").lower() for k, v in pb.Goal.items()}
SOURCES = {v: k.removeprefix("TRIAL_SOURCE_").lower() for k, v in pb.TrialSource.items()}
COUNT_FIELDS = (
    "requested",
    "active",
    "completed",
    "stopped_early",
    "infeasible",
    "failed",
    "lost",
)
# The lease a server gives when a spec leaves it at 0.
DEFAULT_LEASE_SECONDS = 600.0


def seconds(message: Message, name: str) -> float:
    """A Timestamp field as seconds since 1970 (0.0 when unset)."""
    if not message.HasField(name):
        return 0.0
    return float(getattr(message, name).ToNanoseconds()) / 1e9


def finite(metrics: Any) -> dict[str, float]:
    """Metrics as a dict, without values JSON cannot carry (the server refuses them)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def study_summary(study: pb.Study) -> dict[str, Any]:
    """The study as the studies page and a study's header show it."""
    counts = {f: getattr(study.trial_counts, f) for f in COUNT_FIELDS}
    return {
        "name": study.name,
        "state": STUDY_STATES.get(study.state, "unknown"),
        "counts": counts,
        "trials": sum(counts.values()),
        "created": seconds(study, "create_time"),
        "updated": seconds(study, "update_time"),
        "algorithm": study.spec.algorithm,
        "max_trials": study.spec.max_trials,
        "metrics": [
            {"name": m.name, "goal": GOALS.get(m.goal, "minimize")} for m in study.spec.metrics
        ],
    }


def _parameter(p: pb.ParameterSpec) -> dict[str, Any]:
    kind = p.WhichOneof("domain") or ""
    out: dict[str, Any] = {"name": p.name, "kind": kind, "log": False, "condition": None}
    if kind in ("float_range", "integer_range"):
        r = getattr(p, kind)
        out.update(
            kind="float" if kind == "float_range" else "int",
            low=float(r.min_value),
            high=float(r.max_value),
            log=r.scale == pb.SCALE_LOG,
        )
    elif kind == "categorical":
        out.update(choices=list(p.categorical.values))
    elif kind == "discrete":
        values = sorted(p.discrete.values) or [0.0]
        out.update(choices=values, low=values[0], high=values[-1])
    if p.HasField("condition"):
        out["condition"] = p.condition.parent
    return out


def spec_summary(spec: pb.StudySpec) -> dict[str, Any]:
    """The spec as the plots need it: parameters, metrics, early stopping, leases."""
    policy = spec.early_stopping
    rule = policy.WhichOneof("rule")
    settings = {}
    if rule is not None:
        settings = {f.name: value for f, value in getattr(policy, rule).ListFields()}
    return {
        "parameters": [_parameter(p) for p in spec.parameters],
        "metrics": [{"name": m.name, "goal": GOALS.get(m.goal, "minimize")} for m in spec.metrics],
        "algorithm": spec.algorithm,
        "max_trials": spec.max_trials,
        "max_concurrent_trials": spec.max_concurrent_trials,
        "lease_seconds": spec.lease_timeout_seconds or DEFAULT_LEASE_SECONDS,
        "early_stopping": {
            "rule": rule or "none",
            "settings": settings,
            "max_step": policy.max_step,
        },
    }


def trial_row(t: pb.Trial) -> dict[str, Any]:
    """One trial as the table, the plots and the workers view read it."""
    stop = None
    if t.HasField("stop_decision"):
        d = t.stop_decision
        stop = {"step": d.step, "rule": d.rule, "reason": d.reason}
    final = t.final_measurement if t.HasField("final_measurement") else None
    return {
        "id": t.id,
        "state": STATE_NAMES.get(t.state, "unknown"),
        "params": {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in params_from_pb(t).items()
        },
        "values": finite(final.metrics) if final is not None else None,
        "final_step": final.step if final is not None else None,
        "worker": t.worker_id,
        "source": SOURCES.get(t.source, "unknown"),
        "retry_of": t.retry_of,
        "reason": t.reason,
        "stop": stop,
        "created": seconds(t, "create_time"),
        "started": seconds(t, "start_time"),
        "ended": seconds(t, "end_time"),
        "lease": seconds(t, "lease_expire_time"),
    }
