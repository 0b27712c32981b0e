"""Grid search: every combination of per-parameter grid values, conditionals expanded as a
tree (a child only varies where it is active), in a fixed order; trials already created
or pending are skipped, so the grid is a pure function of the history."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from tunewire.server.algorithms.base import SuggestRequest
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import MAX_GRID_POINTS
from tunewire.server.domain.space import (
    ParameterKind,
    ParameterSpec,
    Params,
    ParamValue,
    SearchSpace,
)
from tunewire.server.domain.study import StudySpec


def grid_values(spec: ParameterSpec, resolution: int) -> list[ParamValue]:
    """The values a grid takes for one parameter."""
    if spec.kind in (ParameterKind.CATEGORICAL, ParameterKind.DISCRETE):
        return list(spec.choices)
    if spec.kind is ParameterKind.INTEGER:
        span = int(spec.high) - int(spec.low) + 1
        if span <= resolution:
            return list(range(int(spec.low), int(spec.high) + 1))
        if spec.log:
            raw = np.exp(np.linspace(math.log(spec.low), math.log(spec.high), resolution))
        else:
            raw = np.linspace(spec.low, spec.high, resolution)
        return sorted({int(round(v)) for v in raw})
    if spec.log:
        raw = np.exp(np.linspace(math.log(spec.low), math.log(spec.high), resolution))
        raw[0], raw[-1] = spec.low, spec.high
    else:
        raw = np.linspace(spec.low, spec.high, resolution)
    return [float(v) for v in raw]


def iterate_grid(space: SearchSpace, resolution: int) -> Iterator[Params]:
    """All grid configurations, parents varying slowest: a depth-first walk over the
    parameters in order (a loop, not recursion, so that a study's parameter count is not
    bounded by Python's recursion limit), where an inactive parameter takes no value."""
    specs = space.parameters
    values = {p.name: grid_values(p, resolution) for p in specs}
    # Per parameter, what is left to try where the walk is: (value,) or () when inactive.
    choices: list[Iterator[tuple[ParamValue, ...]] | None] = [None] * len(specs)
    params: Params = {}
    index = 0
    while index >= 0:
        if index == len(specs):
            yield dict(params)
            index -= 1
            continue
        spec = specs[index]
        left = choices[index]
        if left is None:  # entered from the parameter before it
            active = space.is_active(spec, params)
            left = iter([(v,) for v in values[spec.name]] if active else [()])
            choices[index] = left
        choice = next(left, None)
        if choice is None:
            choices[index] = None
            params.pop(spec.name, None)
            index -= 1
            continue
        if choice:
            params[spec.name] = choice[0]
        index += 1


def _key(params: Params) -> tuple[tuple[str, ParamValue], ...]:
    return tuple(sorted(params.items()))


class GridSearch:
    """Every grid point once, in a fixed order, skipping those tried or pending."""

    uses_history = True
    combine_asks = True
    uses_curves = False

    def check_spec(self, spec: StudySpec) -> None:
        """A grid of at most MAX_GRID_POINTS configurations: every suggestion walks it."""
        points = sum(
            1
            for _ in itertools.islice(
                iterate_grid(spec.space, spec.grid_resolution), MAX_GRID_POINTS + 1
            )
        )
        if points > MAX_GRID_POINTS:
            raise InvalidArgument(
                f"the grid has more than {MAX_GRID_POINTS:,} points at grid_resolution "
                f"{spec.grid_resolution}; lower the resolution, list fewer values, or use "
                "random or sobol"
            )

    def suggest(self, request: SuggestRequest) -> list[Params]:
        seen = {_key(o.params) for o in request.observations}
        seen.update(_key(p) for p in request.pending)
        out: list[Params] = []
        for params in iterate_grid(request.spec.space, request.spec.grid_resolution):
            if len(out) >= request.count:
                break
            if _key(params) not in seen:
                seen.add(_key(params))
                out.append(params)
        return out
