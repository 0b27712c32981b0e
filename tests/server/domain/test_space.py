"""Search spaces and study specs from their dict form: strict keys, bounded and exact
numbers, values in the types the user declared."""

from __future__ import annotations

import pytest

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.space import SearchSpace
from tunewire.server.domain.study import StudySpec

METRICS = [{"name": "loss", "goal": "minimize"}]


def spec(*parameters: dict, **extra: object) -> StudySpec:
    return StudySpec.from_dict({"parameters": list(parameters), "metrics": METRICS, **extra})


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"sclae": "log"}, "unknown key 'sclae' (did you mean 'scale'?)"),
        ({"minimum": 0}, "unknown key 'minimum' (did you mean 'min'?)"),
        ({"values": [1, 2]}, "unknown key 'values'"),
    ],
)
def test_a_misspelt_parameter_key_is_refused_with_the_closest_one(raw: dict, needle: str) -> None:
    parameter = {"name": "lr", "type": "float", "min": 1e-4, "max": 0.1, **raw}
    with pytest.raises(InvalidArgument) as err:
        spec(parameter)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"algoritm": "random"}, "(did you mean 'algorithm'?)"),
        ({"max_trial": 5}, "(did you mean 'max_trials'?)"),
        ({"early_stopping": {"rule": "median", "grace_periods": 2}}, "grace_period_steps"),
        ({"max_trials": 2.5}, "max_trials must be a whole number"),
        ({"seed": "7"}, "seed must be a whole number"),
        ({"lease_timeout_seconds": True}, "lease_timeout_seconds must be a number"),
    ],
)
def test_a_spec_is_read_strictly(extra: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        spec({"name": "x", "type": "float", "min": 0, "max": 1}, **extra)
    assert needle in str(err.value)


def test_metric_keys_are_checked_too() -> None:
    with pytest.raises(InvalidArgument, match="did you mean 'goal'"):
        StudySpec.from_dict(
            {
                "parameters": [{"name": "x", "type": "float", "min": 0, "max": 1}],
                "metrics": [{"name": "loss", "gaol": "minimize"}],
            }
        )


def test_integer_bounds_must_be_whole_and_exact() -> None:
    with pytest.raises(InvalidArgument, match="whole numbers"):
        spec({"name": "n", "type": "int", "min": 1.5, "max": 8})
    with pytest.raises(InvalidArgument, match="within ±9,007,199,254,740,991"):
        spec({"name": "n", "type": "int", "min": 0, "max": 2**63 - 1})
    assert (
        spec({"name": "n", "type": "int", "min": 0, "max": 2**53 - 1}).space["n"].high == 2**53 - 1
    )


def test_values_come_back_in_the_declared_type() -> None:
    space = spec(
        {"name": "batch", "type": "discrete", "values": [64, 16, 32]},
        {"name": "ratio", "type": "discrete", "values": [0.5, 1, 2]},
        {"name": "layers", "type": "int", "min": 0, "max": 4},
    ).space
    assert space["batch"].choices == (16, 32, 64)
    params = space.validate({"batch": 64.0, "ratio": 1, "layers": 2.0})
    assert params == {"batch": 64, "ratio": 1.0, "layers": 2}
    assert [type(params[k]) for k in ("batch", "ratio", "layers")] == [int, float, int]


def test_a_spec_survives_its_stored_form() -> None:
    s = spec(
        {"name": "batch", "type": "discrete", "values": [16, 32]},
        {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
        {
            "name": "momentum",
            "type": "float",
            "min": 0.0,
            "max": 0.99,
            "condition": {"parent": "opt", "values": ["sgd"]},
        },
        early_stopping={"rule": "successive_halving", "reduction_factor": 3},
        lease_timeout_seconds=30,
    )
    assert StudySpec.from_json(s.to_json()) == s


def test_a_long_chain_of_conditions_is_ordered_without_recursion() -> None:
    chain = [{"name": "p0", "type": "int", "min": 0, "max": 1}] + [
        {
            "name": f"p{i}",
            "type": "int",
            "min": 0,
            "max": 1,
            "condition": {"parent": f"p{i - 1}", "values": [1]},
        }
        for i in range(1, 1000)
    ]
    space = SearchSpace.from_dicts(list(reversed(chain)))
    assert space.names == [f"p{i}" for i in range(1000)]


def test_condition_bounds_must_be_ordered_and_finite() -> None:
    parent = {"name": "n", "type": "int", "min": 0, "max": 8}
    for condition, needle in [
        ({"parent": "n", "min": 5, "max": 2}, "is above its max"),
        ({"parent": "n", "min": float("nan")}, "finite"),
        ({"parent": "n", "values": ["three"]}, "parameter 'n' is numeric"),
        ({"parent": "n", "vaules": [1]}, "did you mean 'values'"),
    ]:
        child = {"name": "c", "type": "float", "min": 0, "max": 1, "condition": condition}
        with pytest.raises(InvalidArgument, match=needle.replace("(", r"\(")):
            spec(parent, child)
