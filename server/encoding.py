"""Maps configurations to points of the unit cube and back, for every parameter kind.

One coordinate per parameter, in the search space's (parents-first) order. Inactive
conditional parameters encode to a fixed 0.5 and are left out when decoding, so every
decoded configuration is valid in the original space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from tunewire.server.space import ParameterKind, ParameterSpec, Params, ParamValue, SearchSpace

INACTIVE_VALUE = 0.5


def _int_bounds(spec: ParameterSpec) -> tuple[float, float]:
    """Bounds of the continuous range that rounds onto [low, high] with equal-width bins."""
    if spec.log:
        return math.log(spec.low - 0.5), math.log(spec.high + 0.5)
    return spec.low - 0.5, spec.high + 0.5


def value_from_unit(spec: ParameterSpec, u: float) -> ParamValue:
    """The value of one parameter at unit coordinate u in [0, 1]."""
    u = min(max(float(u), 0.0), 1.0)
    if spec.kind is ParameterKind.FLOAT:
        if spec.log:
            lo, hi = math.log(spec.low), math.log(spec.high)
            return min(max(math.exp(lo + u * (hi - lo)), spec.low), spec.high)
        return spec.low + u * (spec.high - spec.low)
    if spec.kind is ParameterKind.INTEGER:
        lo, hi = _int_bounds(spec)
        x = lo + u * (hi - lo)
        value = math.exp(x) if spec.log else x
        return int(min(max(round(value), spec.low), spec.high))
    index = min(int(u * len(spec.choices)), len(spec.choices) - 1)
    return spec.choices[index]


def unit_from_value(spec: ParameterSpec, value: ParamValue) -> float:
    """The unit coordinate of a value (the centre of its bin for discrete kinds)."""
    if spec.kind is ParameterKind.FLOAT:
        v = float(value)
        if spec.log:
            lo, hi = math.log(spec.low), math.log(spec.high)
            return (math.log(v) - lo) / (hi - lo)
        return (v - spec.low) / (spec.high - spec.low)
    if spec.kind is ParameterKind.INTEGER:
        lo, hi = _int_bounds(spec)
        x = math.log(float(value)) if spec.log else float(value)
        return min(max((x - lo) / (hi - lo), 0.0), 1.0)
    index = spec.choices.index(value)
    return (index + 0.5) / len(spec.choices)


def decode_unit(space: SearchSpace, u: np.ndarray) -> Params:
    """A valid configuration from a point of [0, 1]^d (d = number of parameters)."""
    params: Params = {}
    for i, spec in enumerate(space.parameters):
        if space.is_active(spec, params):
            params[spec.name] = value_from_unit(spec, float(u[i]))
    return params


def encode_unit(space: SearchSpace, params: Mapping[str, ParamValue]) -> np.ndarray:
    """The unit-cube point of a configuration; inactive parameters sit at INACTIVE_VALUE."""
    out = np.full(len(space), INACTIVE_VALUE)
    for i, spec in enumerate(space.parameters):
        if spec.name in params:
            out[i] = unit_from_value(spec, params[spec.name])
    return out
