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
    """All grid configurations, parents varying slowest."""
    values = {p.name: grid_values(p, resolution) for p in space.parameters}

    def expand(index: int, params: Params) -> Iterator[Params]:
        if index == len(space.parameters):
            yield dict(params)
            return
        spec = space.parameters[index]
        if not space.is_active(spec, params):
            yield from expand(index + 1, params)
            return
        for v in values[spec.name]:
            params[spec.name] = v
            yield from expand(index + 1, params)
        del params[spec.name]

    yield from expand(0, {})


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
