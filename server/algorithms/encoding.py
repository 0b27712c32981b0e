"""Maps configurations to points of the unit cube and back, for every parameter kind.

One coordinate per parameter, in the search space's (parents-first) order. Inactive
conditional parameters encode to a fixed 0.5 and are left out when decoding, so every
decoded configuration is valid in the original space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tunewire.server.domain.space import (
    Condition,
    ParameterKind,
    ParameterSpec,
    Params,
    ParamValue,
    SearchSpace,
)

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


# --------------------------------------------------------------------------------------
# The Gaussian-process encoding: the model's input columns and the acquisition's moves.
# --------------------------------------------------------------------------------------

# Integers and discrete parameters with more values than this are optimised as continuous
# coordinates and rounded at the end: their bins are so narrow that rounding moves a point
# by less than the model can resolve, and enumerating them would cost more than it gains.
MAX_ENUMERATED_VALUES = 256


@dataclass(frozen=True)
class ColumnBlock:
    """The model columns of one parameter.

    Numeric parameters (float, int, discrete) have one column: the unit coordinate.
    Categorical parameters are one-hot, one column per choice: with an ARD kernel the
    distance between two one-hot vectors is a per-choice Hamming distance, so the model
    treats choices as unordered without a special kernel, while the acquisition optimiser
    only ever proposes exact one-hot vectors (see `ModelEncoding.choices`).
    """

    spec: ParameterSpec
    start: int
    stop: int
    # Unit coordinates a discrete move may take (bin centres), or None for continuous.
    grid: np.ndarray | None

    @property
    def categorical(self) -> bool:
        return self.spec.kind is ParameterKind.CATEGORICAL


class ModelEncoding:
    """Maps configurations to the GP's input columns and back, and keeps candidates valid.

    Inactive conditional parameters get a fixed encoding (0.5 for a numeric column, all
    zeros for a one-hot block) so that two configurations that differ only in parameters
    that do not matter look identical to the model; the parent's own column tells the
    model which branch a point is on.

    Example:
        >>> enc = ModelEncoding(space)
        >>> x = enc.encode(params)          # numpy (D,)
        >>> enc.decode(x) == space.validate(params)
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        blocks: list[ColumnBlock] = []
        column = 0
        for spec in space.parameters:
            if spec.kind is ParameterKind.CATEGORICAL:
                width = len(spec.choices)
                blocks.append(ColumnBlock(spec, column, column + width, None))
            else:
                blocks.append(ColumnBlock(spec, column, column + 1, _unit_grid(spec)))
                width = 1
            column += width
        self.blocks: tuple[ColumnBlock, ...] = tuple(blocks)
        self.dim = column
        self._index = {b.spec.name: i for i, b in enumerate(blocks)}
        self.conditional = any(b.spec.condition is not None for b in blocks)
        # Columns moved by gradient steps (floats and finely-binned numbers).
        self.continuous_columns = [b.start for b in blocks if not b.categorical and b.grid is None]
        # Blocks moved by enumeration (categoricals, ints, discrete values).
        self.discrete_blocks = [b for b in blocks if b.categorical or b.grid is not None]
        inactive = np.full(self.dim, INACTIVE_VALUE)
        for b in blocks:
            if b.categorical:
                inactive[b.start : b.stop] = 0.0
        self.inactive_values = inactive

    def encode(self, params: Mapping[str, ParamValue]) -> np.ndarray:
        """The model input of one configuration (inactive parameters at fixed values)."""
        out = self.inactive_values.copy()
        for b in self.blocks:
            if b.spec.name not in params:
                continue
            value = params[b.spec.name]
            if b.categorical:
                out[b.start : b.stop] = 0.0
                out[b.start + b.spec.choices.index(value)] = 1.0
            else:
                out[b.start] = unit_from_value(b.spec, value)
        return out

    def decode(self, x: np.ndarray) -> Params:
        """The valid configuration of a model input (argmax for one-hot blocks)."""
        params: Params = {}
        for b in self.blocks:
            if not self.space.is_active(b.spec, params):
                continue
            if b.categorical:
                params[b.spec.name] = b.spec.choices[int(np.argmax(x[b.start : b.stop]))]
            else:
                params[b.spec.name] = value_from_unit(b.spec, float(x[b.start]))
        return params

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Valid model inputs from points of the unit cube with one coordinate per parameter.

        Used to turn Sobol or uniform draws into candidates: u has shape (n, len(space)).
        """
        return np.stack([self.encode(decode_unit(self.space, row)) for row in u])

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Snaps rows of model inputs onto valid encodings (exact bins, one-hot, inactive)."""
        return np.stack([self.encode(self.decode(row)) for row in np.atleast_2d(x)])

    def with_activity(self, x: np.ndarray) -> np.ndarray:
        """Rows of `x` with the columns of inactive parameters set to their fixed values."""
        if not self.conditional:
            return x
        mask = self.active_mask(x)
        return np.where(mask, x, self.inactive_values)

    def active_mask(self, x: np.ndarray) -> np.ndarray:
        """Boolean (n, D): which columns of each row belong to active parameters.

        Vectorised over rows: a parameter is active where its parent is active and the
        parent's decoded value meets the condition, the same decision `decode` makes
        row by row (the acquisition search asks this for thousands of candidates)."""
        x = np.atleast_2d(x)
        mask = np.ones(x.shape, dtype=bool)
        if not self.conditional:
            return mask
        active: dict[str, np.ndarray] = {}
        for b in self.blocks:
            condition = b.spec.condition
            if condition is None:
                on = np.ones(len(x), dtype=bool)
            else:
                parent = self.blocks[self._index[condition.parent]]
                on = active[condition.parent] & _condition_holds(condition, parent, x)
            active[b.spec.name] = on
            mask[:, b.start : b.stop] = on[:, None]
        return mask

    def choices(self, block: ColumnBlock, current: float | None = None) -> np.ndarray:
        """The column values a discrete move of `block` may try: (k, width) rows.

        Categoricals: every one-hot vector. Numbers: every bin centre, or for long grids a
        spread of them plus the neighbours of `current`, so that a move can both jump and
        fine-tune.
        """
        if block.categorical:
            return np.eye(block.stop - block.start)
        assert block.grid is not None
        grid = block.grid
        if len(grid) <= 32 or current is None:
            chosen = (
                grid if len(grid) <= 32 else grid[np.linspace(0, len(grid) - 1, 32).astype(int)]
            )
            return chosen[:, None]
        spread = grid[np.linspace(0, len(grid) - 1, 24).astype(int)]
        here = int(np.argmin(np.abs(grid - current)))
        near = grid[max(0, here - 4) : here + 5]
        return np.unique(np.concatenate([spread, near]))[:, None]


def _unit_grid(spec: ParameterSpec) -> np.ndarray | None:
    """Bin centres of an integer or discrete parameter, or None for continuous treatment."""
    if spec.kind is ParameterKind.FLOAT:
        return None
    if spec.kind is ParameterKind.DISCRETE:
        n = len(spec.choices)
        return (np.arange(n) + 0.5) / n
    n = int(spec.high) - int(spec.low) + 1
    if n > MAX_ENUMERATED_VALUES:
        return None
    return np.array([unit_from_value(spec, v) for v in range(int(spec.low), int(spec.high) + 1)])


def encode_every_parameter(encoding: ModelEncoding, u: np.ndarray) -> np.ndarray:
    """Model inputs with every parameter set, active or not, from unit points (n, len(space)).

    The acquisition optimiser keeps candidates in this form so that a child parameter
    already has a sensible value the moment a move of its parent activates it; activity
    is applied only when a candidate is scored or decoded (`ModelEncoding.with_activity`).
    """
    u = np.atleast_2d(u)
    out = np.zeros((len(u), encoding.dim))
    for i, b in enumerate(encoding.blocks):
        column = np.clip(u[:, i], 0.0, 1.0)
        if b.categorical:
            k = b.stop - b.start
            index = np.minimum((column * k).astype(int), k - 1)
            out[np.arange(len(u)), b.start + index] = 1.0
        elif b.spec.kind is ParameterKind.FLOAT:
            out[:, b.start] = column
        elif b.grid is not None:  # bin centres, exactly as unit_from_value gives them
            out[:, b.start] = b.grid[_bin_indices(b.spec, column)]
        else:  # too many integers for a grid: unit_from_value(value_from_unit(c)), vectorised
            values = (_bin_indices(b.spec, column) + b.spec.low).astype(float)
            lo, hi = _int_bounds(b.spec)
            x = np.log(values) if b.spec.log else values
            out[:, b.start] = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return out


def _bin_indices(spec: ParameterSpec, u: np.ndarray) -> np.ndarray:
    """Vectorised value_from_unit for discrete, categorical and integer parameters: the
    index of each unit coordinate's value among the parameter's values (choices, or
    low..high for integers)."""
    u = np.clip(u, 0.0, 1.0)
    if spec.kind is not ParameterKind.INTEGER:
        return np.minimum((u * len(spec.choices)).astype(int), len(spec.choices) - 1)
    lo, hi = _int_bounds(spec)
    x = lo + u * (hi - lo)
    value = np.exp(x) if spec.log else x
    return (np.clip(np.round(value), spec.low, spec.high) - spec.low).astype(int)


def _condition_holds(condition: Condition, parent: ColumnBlock, x: np.ndarray) -> np.ndarray:
    """Whether the parent's decoded value in each row of model inputs x meets `condition`."""
    spec = parent.spec
    if spec.kind is ParameterKind.CATEGORICAL:
        index = np.argmax(x[:, parent.start : parent.stop], axis=1)
        return np.array([condition.holds(c) for c in spec.choices])[index]
    u = x[:, parent.start]
    if spec.kind is ParameterKind.DISCRETE:
        return np.array([condition.holds(c) for c in spec.choices])[_bin_indices(spec, u)]
    if spec.kind is ParameterKind.INTEGER:
        values = _bin_indices(spec, u) + spec.low
    else:
        u = np.clip(u, 0.0, 1.0)
        if spec.log:
            lo, hi = math.log(spec.low), math.log(spec.high)
            values = np.clip(np.exp(lo + u * (hi - lo)), spec.low, spec.high)
        else:
            values = spec.low + u * (spec.high - spec.low)
    holds = np.ones(len(x), dtype=bool)
    if condition.values:
        holds &= np.isin(values, np.array(condition.values, dtype=float))
    if condition.min_value is not None:
        holds &= values >= condition.min_value
    if condition.max_value is not None:
        holds &= values <= condition.max_value
    return holds
