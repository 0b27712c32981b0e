"""Study specs as dicts or YAML/JSON files, converted to the API's StudySpec message.

The dict form (also the YAML form):

    name: digits                       # optional here; the study name
    metrics: [{name: val_loss, goal: minimize}]
    algorithm: gp                      # gp | random | sobol | grid
    seed: 0
    max_trials: 30
    max_concurrent_trials: 0           # 0 = unlimited
    lease_timeout_seconds: 600
    max_trial_retries: 2
    initial_trials: 0                  # Sobol points before the model (0 = default)
    early_stopping: {rule: median, min_completed_trials: 5, grace_period_steps: 1}
    parameters:
      - {name: lr, type: float, min: 1.0e-4, max: 0.1, scale: log}
      - {name: hidden_layers, type: int, min: 0, max: 4}
      - {name: units_1, type: int, min: 16, max: 512, scale: log,
         condition: {parent: hidden_layers, min: 1}}
      - {name: optimizer, type: categorical, values: [sgd, adam]}
      - {name: batch_size, type: discrete, values: [16, 32, 64, 128]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tunewire.v1 import study_pb2 as pb

_TYPES = {
    "float": "float",
    "real": "float",
    "double": "float",
    "int": "int",
    "integer": "int",
    "categorical": "categorical",
    "choice": "categorical",
    "discrete": "discrete",
    "ordinal": "discrete",
}
_RULE_MESSAGES = {
    "median": "median",
    "successive_halving": "successive_halving",
    "asha": "successive_halving",
    "patience": "patience",
    "threshold": "threshold",
}


class SpecError(ValueError):
    """The dict or file is not a study spec; the message says what to fix."""


def value_to_pb(value: Any) -> pb.ParameterValue:
    if isinstance(value, bool):
        raise SpecError(f"parameter values cannot be booleans ({value!r}); use strings")
    if isinstance(value, str):
        return pb.ParameterValue(string_value=value)
    if isinstance(value, int):
        return pb.ParameterValue(integer_value=value)
    return pb.ParameterValue(number_value=float(value))


def value_from_pb(value: pb.ParameterValue) -> float | int | str:
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else 0.0


def _scale(raw: Mapping[str, Any], name: str) -> pb.Scale:
    scale = str(raw.get("scale", "linear")).lower()
    if scale not in ("linear", "log"):
        raise SpecError(f"parameter {name!r}: scale must be 'linear' or 'log'")
    return pb.SCALE_LOG if scale == "log" else pb.SCALE_LINEAR


def _parameter(raw: Mapping[str, Any]) -> pb.ParameterSpec:
    name = str(raw.get("name", ""))
    kind = _TYPES.get(str(raw.get("type", "")).lower())
    if kind is None:
        raise SpecError(
            f"parameter {name!r}: type must be float, int, categorical or discrete "
            f"(got {raw.get('type')!r})"
        )
    out = pb.ParameterSpec(name=name)
    try:
        if kind == "float":
            out.float_range.CopyFrom(
                pb.FloatRange(
                    min_value=float(raw["min"]),
                    max_value=float(raw["max"]),
                    scale=_scale(raw, name),
                )
            )
        elif kind == "int":
            out.integer_range.CopyFrom(
                pb.IntegerRange(
                    min_value=int(raw["min"]), max_value=int(raw["max"]), scale=_scale(raw, name)
                )
            )
        elif kind == "categorical":
            out.categorical.values.extend(str(v) for v in raw.get("values", []))
        else:
            out.discrete.values.extend(float(v) for v in raw.get("values", []))
    except KeyError as missing:
        raise SpecError(f"parameter {name!r}: {missing} is required") from None
    except (TypeError, ValueError) as exc:
        raise SpecError(f"parameter {name!r}: {exc}") from None
    cond = raw.get("condition")
    if cond:
        c = pb.Condition(parent=str(cond.get("parent", "")))
        c.values.extend(value_to_pb(v) for v in cond.get("values", []) or [])
        if cond.get("min") is not None:
            c.min_value = float(cond["min"])
        if cond.get("max") is not None:
            c.max_value = float(cond["max"])
        out.condition.CopyFrom(c)
    return out


def spec_from_dict(raw: Mapping[str, Any]) -> pb.StudySpec:
    """Builds the StudySpec message; the server validates the contents."""
    if not isinstance(raw, Mapping):
        raise SpecError("a study spec must be a mapping")
    spec = pb.StudySpec(
        parameters=[_parameter(p) for p in raw.get("parameters", []) or []],
        algorithm=str(raw.get("algorithm", "") or ""),
        seed=int(raw.get("seed", 0) or 0),
        max_trials=int(raw.get("max_trials", 0) or 0),
        max_concurrent_trials=int(raw.get("max_concurrent_trials", 0) or 0),
        lease_timeout_seconds=float(raw.get("lease_timeout_seconds", 0) or 0),
        initial_trials=int(raw.get("initial_trials", 0) or 0),
        grid_resolution=int(raw.get("grid_resolution", 0) or 0),
    )
    if raw.get("max_trial_retries") is not None:
        spec.max_trial_retries = int(raw["max_trial_retries"])
    for m in raw.get("metrics", []) or []:
        goal = str(m.get("goal", "minimize")).lower()
        if goal.startswith("min"):
            g = pb.GOAL_MINIMIZE
        elif goal.startswith("max"):
            g = pb.GOAL_MAXIMIZE
        else:
            raise SpecError(f"metric {m.get('name')!r}: goal must be minimize or maximize")
        spec.metrics.append(pb.MetricSpec(name=str(m.get("name", "")), goal=g))
    es = dict(raw.get("early_stopping") or {})
    rule = str(es.pop("rule", es.pop("type", "none")) or "none").lower()
    if rule != "none":
        field = _RULE_MESSAGES.get(rule)
        if field is None:
            raise SpecError(
                f"early_stopping rule must be none, median, successive_halving, patience or "
                f"threshold (got {rule!r})"
            )
        message = getattr(spec.early_stopping, field)
        for key, value in es.items():
            if key not in message.DESCRIPTOR.fields_by_name:
                raise SpecError(f"early_stopping {rule}: unknown setting {key!r}")
            f = message.DESCRIPTOR.fields_by_name[key]
            if f.type == f.TYPE_DOUBLE:
                setattr(message, key, float(value))
            elif f.type == f.TYPE_BOOL:
                setattr(message, key, bool(value))
            else:
                setattr(message, key, int(value))
        message.SetInParent()
    return spec


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON spec file into the dict form."""
    text = Path(path).read_text()
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return data
