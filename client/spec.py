"""Study specs as dicts or YAML/JSON files, converted to the API's StudySpec message.

The dict form (also the YAML form):

    name: digits                       # optional here; the study name
    metrics: [{name: val_loss, goal: minimize}]
    algorithm: gp                      # gp | gp_mf | random | sobol | grid
    seed: 0
    max_trials: 30
    max_concurrent_trials: 0           # 0 = unlimited
    lease_timeout_seconds: 600
    max_trial_retries: 2
    initial_trials: 0                  # Sobol points before the model (0 = default)
    early_stopping: {rule: median, min_completed_trials: 5, grace_period_steps: 1,
                     max_step: 20}   # the last step of a full-length trial (20 epochs)
    parameters:
      - {name: lr, type: float, min: 1.0e-4, max: 0.1, scale: log}
      - {name: hidden_layers, type: int, min: 0, max: 4}
      - {name: units_1, type: int, min: 16, max: 512, scale: log,
         condition: {parent: hidden_layers, min: 1}}
      - {name: optimizer, type: categorical, values: [sgd, adam]}
      - {name: batch_size, type: discrete, values: [16, 32, 64, 128]}
"""

from __future__ import annotations

import difflib
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
    """The value in the type the study declared: int for int parameters and for discrete
    ones whose values are whole numbers (the server sends those as integer_value)."""
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else 0.0


# The keys of each part of the dict form. A spec's are StudySpec's fields (and the study's
# name, which a file may carry); a misspelt key is refused, not ignored.
SPEC_KEYS = frozenset(pb.StudySpec.DESCRIPTOR.fields_by_name) | {"name"}
METRIC_KEYS = frozenset(pb.MetricSpec.DESCRIPTOR.fields_by_name)
RANGE_KEYS = frozenset({"name", "type", "min", "max", "scale", "condition"})
CHOICE_KEYS = frozenset({"name", "type", "values", "condition"})
CONDITION_KEYS = frozenset({"parent", "values", "min", "max"})


def _check_keys(where: str, raw: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"{where}: unknown key {key!r}{hint}; the keys are {sorted(known)}")


def _mapping(where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be a mapping, got {raw!r}")
    return raw


def _items(where: str, raw: Any) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, (list, tuple)):
        raise SpecError(f"{where} must be a list, got {raw!r}")
    return list(raw)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, got {value!r}")
    return float(value)


def _whole(where: str, value: Any) -> int:
    """An integer; 1.5 is refused rather than truncated to 1."""
    number = _number(where, value)
    if number != number or number in (float("inf"), float("-inf")) or number != int(number):
        raise SpecError(f"{where} must be a whole number, got {value!r}")
    return int(value)


def _scale(raw: Mapping[str, Any], name: str) -> pb.Scale:
    scale = str(raw.get("scale", "linear")).lower()
    if scale not in ("linear", "log"):
        raise SpecError(f"parameter {name!r}: scale must be 'linear' or 'log', got {scale!r}")
    return pb.SCALE_LOG if scale == "log" else pb.SCALE_LINEAR


def _parameter(raw: Any) -> pb.ParameterSpec:
    raw = _mapping("a parameter", raw)
    name = _name("a parameter", raw)
    kind = _TYPES.get(str(raw.get("type", "")).lower())
    where = f"parameter {name!r}"
    if kind is None:
        raise SpecError(
            f"{where}: type must be float, int, categorical or discrete (got {raw.get('type')!r})"
        )
    _check_keys(where, raw, RANGE_KEYS if kind in ("float", "int") else CHOICE_KEYS)
    out = pb.ParameterSpec(name=name)
    if kind in ("float", "int"):
        for key in ("min", "max"):
            if key not in raw:
                raise SpecError(f"{where}: {key!r} is required")
        if kind == "float":
            out.float_range.CopyFrom(
                pb.FloatRange(
                    min_value=_number(f"{where}: min", raw["min"]),
                    max_value=_number(f"{where}: max", raw["max"]),
                    scale=_scale(raw, name),
                )
            )
        else:
            out.integer_range.CopyFrom(
                pb.IntegerRange(
                    min_value=_whole(f"{where}: min", raw["min"]),
                    max_value=_whole(f"{where}: max", raw["max"]),
                    scale=_scale(raw, name),
                )
            )
    elif kind == "categorical":
        values = _items(f"{where}: values", raw.get("values"))
        if not all(isinstance(v, str) for v in values):
            raise SpecError(f"{where}: categorical values must be strings, got {values!r}")
        out.categorical.values.extend(values)
    else:
        values = _items(f"{where}: values", raw.get("values"))
        out.discrete.values.extend(_number(f"{where}: a discrete value", v) for v in values)
    cond = raw.get("condition")
    if cond:
        cond = _mapping(f"{where}: condition", cond)
        _check_keys(f"{where}: condition", cond, CONDITION_KEYS)
        c = pb.Condition(parent=str(cond.get("parent", "")))
        c.values.extend(
            value_to_pb(v) for v in _items(f"{where}: condition values", cond.get("values"))
        )
        if cond.get("min") is not None:
            c.min_value = _number(f"{where}: condition min", cond["min"])
        if cond.get("max") is not None:
            c.max_value = _number(f"{where}: condition max", cond["max"])
        out.condition.CopyFrom(c)
    return out


_GOAL_WORDS = {
    "minimize": pb.GOAL_MINIMIZE,
    "minimise": pb.GOAL_MINIMIZE,
    "min": pb.GOAL_MINIMIZE,
    "maximize": pb.GOAL_MAXIMIZE,
    "maximise": pb.GOAL_MAXIMIZE,
    "max": pb.GOAL_MAXIMIZE,
}


def _name(what: str, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{what} needs a name (a non-empty string), got {name!r}")
    return name


def _metric(raw: Any) -> pb.MetricSpec:
    raw = _mapping("a metric", raw)
    name = _name("a metric", raw)
    _check_keys(f"metric {name!r}", raw, METRIC_KEYS)
    goal = raw.get("goal")
    g = _GOAL_WORDS.get(goal.lower()) if isinstance(goal, str) else None
    if g is None:
        raise SpecError(f"metric {name!r}: goal must be minimize or maximize, got {goal!r}")
    return pb.MetricSpec(name=name, goal=g)


def _early_stopping(raw: Any, spec: pb.StudySpec) -> None:
    es = dict(_mapping("early_stopping", raw))
    rule = str(es.pop("rule", es.pop("type", "none")) or "none").lower()
    if "max_step" in es:
        spec.early_stopping.max_step = _whole("early_stopping: max_step", es.pop("max_step"))
    if rule == "none":
        if es:
            raise SpecError(f"early_stopping: rule none takes no settings, got {sorted(es)}")
        return
    field = _RULE_MESSAGES.get(rule)
    if field is None:
        close = difflib.get_close_matches(rule, sorted(_RULE_MESSAGES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(
            f"early_stopping rule must be none, median, successive_halving, patience or "
            f"threshold (got {rule!r}{hint})"
        )
    message = getattr(spec.early_stopping, field)
    known = frozenset(message.DESCRIPTOR.fields_by_name)
    _check_keys(f"early_stopping {rule}", es, known)
    if rule == "threshold" and "bound" not in es:
        # On the wire an unset bound reads as 0: say it here instead.
        raise SpecError("early_stopping threshold: give its bound (the objective's limit)")
    for key, value in es.items():
        f = message.DESCRIPTOR.fields_by_name[key]
        where = f"early_stopping {rule}: {key}"
        if f.type == f.TYPE_DOUBLE:
            setattr(message, key, _number(where, value))
        elif f.type == f.TYPE_BOOL:
            if not isinstance(value, bool):
                raise SpecError(f"{where} must be true or false, got {value!r}")
            setattr(message, key, value)
        else:
            setattr(message, key, _whole(where, value))
    message.SetInParent()


def spec_from_dict(raw: Mapping[str, Any]) -> pb.StudySpec:
    """Builds the StudySpec message from the dict form. Every key is checked here (a
    misspelt one is refused with the closest known key); the server validates the values.

    Raises:
        SpecError: what to fix.
    """
    raw = _mapping("a study spec", raw)
    _check_keys("study spec", raw, SPEC_KEYS)
    try:
        spec = pb.StudySpec(
            parameters=[_parameter(p) for p in _items("parameters", raw.get("parameters"))],
            metrics=[_metric(m) for m in _items("metrics", raw.get("metrics"))],
            algorithm=str(raw.get("algorithm", "") or ""),
            seed=_whole("seed", raw.get("seed") or 0),
            max_trials=_whole("max_trials", raw.get("max_trials") or 0),
            max_concurrent_trials=_whole(
                "max_concurrent_trials", raw.get("max_concurrent_trials") or 0
            ),
            lease_timeout_seconds=_number(
                "lease_timeout_seconds", raw.get("lease_timeout_seconds") or 0
            ),
            initial_trials=_whole("initial_trials", raw.get("initial_trials") or 0),
            grid_resolution=_whole("grid_resolution", raw.get("grid_resolution") or 0),
        )
        if raw.get("max_trial_retries") is not None:
            spec.max_trial_retries = _whole("max_trial_retries", raw["max_trial_retries"])
        if raw.get("early_stopping"):
            _early_stopping(raw["early_stopping"], spec)
    except (ValueError, OverflowError) as exc:  # an integer beyond int64, a protobuf range
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"study spec: {exc}") from None
    return spec


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON spec file into the dict form."""
    text = Path(path).read_text()
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        # PyYAML's first line is often only the context ("while parsing a flow node"); its
        # mark says where the problem is (0-based). JSON's first line has line and column.
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        why = str(exc).splitlines()[0]
        if mark is not None and problem:
            why = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
        raise SpecError(
            f"{path}: not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {why}"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return data
