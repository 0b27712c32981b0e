"""Grid search on its own: the values per parameter, the order of the points (parents
slowest, conditionals as a tree), skipping what was tried or is pending, exhaustion, and
the cap on the grid's size."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import pytest

from tunewire.server.algorithms.base import Observation, SuggestRequest
from tunewire.server.algorithms.grid import GridSearch, grid_values, iterate_grid
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import MAX_GRID_POINTS
from tunewire.server.domain.space import Params, SearchSpace
from tunewire.server.domain.study import StudySpec, TrialState

METRICS = [{"name": "loss", "goal": "minimize"}]
# An integer parent whose value 0 switches a categorical child off.
TREE = [
    {"name": "layers", "type": "int", "min": 0, "max": 2},
    {
        "name": "width",
        "type": "categorical",
        "values": ["s", "l"],
        "condition": {"parent": "layers", "min": 1},
    },
]


def spec(parameters: list[dict[str, Any]], resolution: int = 0) -> StudySpec:
    return StudySpec.from_dict(
        {
            "parameters": parameters,
            "metrics": METRICS,
            "algorithm": "grid",
            "grid_resolution": resolution,
        }
    )


def request(
    s: StudySpec, count: int, tried: Sequence[Params] = (), pending: Sequence[Params] = ()
) -> SuggestRequest:
    observations = [
        Observation(i + 1, p, TrialState.COMPLETED, {"loss": 0.0}) for i, p in enumerate(tried)
    ]
    return SuggestRequest(s, observations, list(pending), count, len(tried) + len(pending))


def values(parameter: dict[str, Any], resolution: int) -> list:
    return grid_values(SearchSpace.from_dicts([parameter]).parameters[0], resolution)


def test_a_linear_float_takes_evenly_spaced_values_from_end_to_end() -> None:
    assert values({"name": "x", "type": "float", "min": 0, "max": 1}, 5) == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]


def test_a_log_float_is_spaced_evenly_in_log_and_keeps_its_exact_bounds() -> None:
    got = values({"name": "lr", "type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"}, 4)
    assert got[0] == 1e-4 and got[-1] == 1e-1
    assert [math.log10(v) for v in got] == pytest.approx([-4, -3, -2, -1])


def test_integers_take_every_value_when_they_fit_else_rounded_distinct_ones() -> None:
    assert values({"name": "n", "type": "int", "min": 2, "max": 5}, 5) == [2, 3, 4, 5]
    assert values({"name": "n", "type": "int", "min": 0, "max": 100}, 5) == [0, 25, 50, 75, 100]
    log = values({"name": "n", "type": "int", "min": 1, "max": 1000, "scale": "log"}, 4)
    assert log == [1, 10, 100, 1000]
    # Rounding a log grid of a short range merges points: each value comes once.
    merged = values({"name": "n", "type": "int", "min": 1, "max": 8, "scale": "log"}, 7)
    assert merged == sorted(set(merged)) and all(isinstance(v, int) for v in merged)


def test_choices_are_every_value_whatever_the_resolution() -> None:
    cat = {"name": "opt", "type": "categorical", "values": ["sgd", "adam", "rmsprop"]}
    parameter = SearchSpace.from_dicts([cat]).parameters[0]
    assert grid_values(parameter, 2) == list(parameter.choices)
    assert values({"name": "b", "type": "discrete", "values": [64, 16, 32]}, 2) == [16, 32, 64]


def test_the_first_parameter_varies_slowest() -> None:
    space = spec(
        [
            {"name": "a", "type": "int", "min": 0, "max": 1},
            {"name": "b", "type": "categorical", "values": ["x", "y"]},
        ]
    ).space
    assert list(iterate_grid(space, 5)) == [
        {"a": 0, "b": "x"},
        {"a": 0, "b": "y"},
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
    ]


def test_a_child_only_varies_where_its_condition_holds() -> None:
    assert list(iterate_grid(spec(TREE).space, 5)) == [
        {"layers": 0},
        {"layers": 1, "width": "s"},
        {"layers": 1, "width": "l"},
        {"layers": 2, "width": "s"},
        {"layers": 2, "width": "l"},
    ]


def test_suggestions_follow_the_grid_order_skipping_tried_and_pending_points() -> None:
    s = spec(TREE)
    grid = list(iterate_grid(s.space, s.grid_resolution))
    assert GridSearch().suggest(request(s, 2)) == grid[:2]
    got = GridSearch().suggest(request(s, 2, tried=[grid[0]], pending=[grid[2]]))
    assert got == [grid[1], grid[3]]


def test_a_grid_is_a_pure_function_of_the_history() -> None:
    s = spec(TREE)
    ask = request(s, 3, tried=[{"layers": 1, "width": "l"}])
    assert GridSearch().suggest(ask) == GridSearch().suggest(ask)


def test_an_exhausted_grid_offers_fewer_then_nothing() -> None:
    s = spec(TREE)
    grid = list(iterate_grid(s.space, s.grid_resolution))
    assert GridSearch().suggest(request(s, 10)) == grid  # fewer than asked: all there is
    assert GridSearch().suggest(request(s, 1, tried=grid[:3], pending=grid[3:])) == []


def test_the_resolution_sets_the_points_of_numeric_ranges() -> None:
    parameters = [
        {"name": "x", "type": "float", "min": 0, "max": 1},
        {"name": "n", "type": "int", "min": 0, "max": 1000},
    ]
    for resolution in (2, 3, 7):
        assert len(list(iterate_grid(spec(parameters).space, resolution))) == resolution**2


def test_a_grid_of_more_points_than_the_cap_is_refused_and_one_at_the_cap_taken() -> None:
    digits = int(round(math.log10(MAX_GRID_POINTS)))
    assert 10**digits == MAX_GRID_POINTS
    ten = [{"name": f"p{i}", "type": "int", "min": 0, "max": 9} for i in range(digits + 1)]
    GridSearch().check_spec(spec(ten[:digits], resolution=10))  # exactly MAX_GRID_POINTS
    with pytest.raises(InvalidArgument, match=f"more than {MAX_GRID_POINTS:,} points"):
        GridSearch().check_spec(spec(ten, resolution=10))
    # The same space fits at a lower resolution: the cap counts points, not parameters.
    floats = [{"name": f"f{i}", "type": "float", "min": 0, "max": 1} for i in range(6)]
    with pytest.raises(InvalidArgument, match="grid_resolution 10"):
        GridSearch().check_spec(spec(floats, resolution=10))
    GridSearch().check_spec(spec(floats, resolution=6))
    assert sum(1 for _ in itertools.islice(iterate_grid(spec(floats).space, 6), 10**6)) == 6**6
