"""Round trips of both encodings (unit cube for random/Sobol, model columns for the GP)
for every parameter kind, conditionals included, as properties over random spaces."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tunewire.server.algorithms.encoding import (
    ModelEncoding,
    decode_unit,
    encode_every_parameter,
    encode_unit,
    unit_from_value,
    value_from_unit,
)
from tunewire.server.domain.space import ParameterKind, SearchSpace


def _float_param(name: str, log: bool) -> dict:
    return {
        "name": name,
        "type": "float",
        "min": 1e-4 if log else -3.0,
        "max": 10.0,
        "scale": "log" if log else "linear",
    }


# A fixed space with every kind, log scales, a categorical parent with a value condition,
# an integer parent with a range condition, and a grandchild.
MIXED_SPACE = SearchSpace.from_dicts(
    [
        _float_param("lr", log=True),
        _float_param("shift", log=False),
        {"name": "layers", "type": "int", "min": 0, "max": 4},
        {
            "name": "width1",
            "type": "int",
            "min": 16,
            "max": 512,
            "scale": "log",
            "condition": {"parent": "layers", "min": 1},
        },
        {
            "name": "width2",
            "type": "int",
            "min": 16,
            "max": 512,
            "scale": "log",
            "condition": {"parent": "layers", "min": 2},
        },
        {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", "rmsprop"]},
        {
            "name": "momentum",
            "type": "float",
            "min": 0.0,
            "max": 0.99,
            "condition": {"parent": "optimizer", "values": ["sgd", "rmsprop"]},
        },
        {
            "name": "nesterov",
            "type": "categorical",
            "values": ["yes", "no"],
            "condition": {"parent": "optimizer", "values": ["sgd"]},
        },
        {"name": "batch", "type": "discrete", "values": [16, 32, 64, 128, 256]},
        {"name": "huge", "type": "int", "min": 1, "max": 10_000_000, "scale": "log"},
    ]
)


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    """Random spaces of 1-6 parameters of every kind, some conditional on earlier ones."""
    raw: list[dict] = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["float", "int", "categorical", "discrete"]))
        name = f"p{i}"
        if kind == "float":
            log = draw(st.booleans())
            low = draw(st.floats(1e-6, 10.0)) if log else draw(st.floats(-100.0, 100.0))
            spec = {
                "name": name,
                "type": "float",
                "min": low,
                "max": low + draw(st.floats(1e-3, 1e3)),
                "scale": "log" if log else "linear",
            }
        elif kind == "int":
            log = draw(st.booleans())
            low = draw(st.integers(1, 50)) if log else draw(st.integers(-50, 50))
            spec = {
                "name": name,
                "type": "int",
                "min": low,
                "max": low + draw(st.integers(1, 2000)),
                "scale": "log" if log else "linear",
            }
        elif kind == "categorical":
            n = draw(st.integers(1, 5))
            spec = {"name": name, "type": "categorical", "values": [f"c{j}" for j in range(n)]}
        else:
            # Distinct at the validator's tolerance (values closer than 1e-12 are one value).
            steps = draw(st.lists(st.integers(-4000, 4000), min_size=1, max_size=6, unique=True))
            spec = {"name": name, "type": "discrete", "values": [v / 4 for v in steps]}
        if raw and draw(st.booleans()):
            parent = draw(st.sampled_from(raw))
            if parent["type"] == "categorical":
                spec["condition"] = {"parent": parent["name"], "values": parent["values"][:1]}
            elif parent["type"] == "discrete":
                spec["condition"] = {"parent": parent["name"], "values": parent["values"][:1]}
            else:
                spec["condition"] = {"parent": parent["name"], "min": parent["min"]}
        raw.append(spec)
    return SearchSpace.from_dicts(raw)


unit_points = st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6)


def _assert_same(space: SearchSpace, a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        if isinstance(value, float):
            assert math.isclose(value, b[name], rel_tol=1e-9, abs_tol=1e-9), name
        else:
            assert value == b[name], name


@settings(max_examples=200, deadline=None)
@given(space=spaces(), u=unit_points)
def test_unit_decode_is_valid_and_round_trips(space: SearchSpace, u: list[float]) -> None:
    params = decode_unit(space, np.array(u[: len(space)]))
    assert space.validate(params) == params
    again = decode_unit(space, encode_unit(space, params))
    _assert_same(space, params, again)


@settings(max_examples=200, deadline=None)
@given(space=spaces(), u=unit_points)
def test_model_encoding_round_trips(space: SearchSpace, u: list[float]) -> None:
    enc = ModelEncoding(space)
    params = decode_unit(space, np.array(u[: len(space)]))
    x = enc.encode(params)
    assert x.shape == (enc.dim,)
    assert np.all((x >= 0) & (x <= 1))
    decoded = enc.decode(x)
    assert space.validate(decoded) == decoded
    _assert_same(space, params, decoded)
    # Encoding is canonical: snapping an encoding changes nothing.
    np.testing.assert_allclose(enc.canonical(x)[0], x, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(space=spaces(), u=unit_points)
def test_every_parameter_form_decodes_to_valid_configurations(
    space: SearchSpace, u: list[float]
) -> None:
    enc = ModelEncoding(space)
    full = encode_every_parameter(enc, np.array([u[: len(space)]]))
    active = enc.with_activity(full)
    params = enc.decode(active[0])
    assert space.validate(params) == params
    # Inactive columns sit at their fixed values, so equal configurations encode equally.
    np.testing.assert_allclose(active[0], enc.encode(params), atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(u=st.lists(st.floats(0.0, 1.0), min_size=10, max_size=10))
def test_mixed_space_with_conditionals(u: list[float]) -> None:
    enc = ModelEncoding(MIXED_SPACE)
    params = decode_unit(MIXED_SPACE, np.array(u))
    assert MIXED_SPACE.validate(params) == params
    _assert_same(MIXED_SPACE, params, enc.decode(enc.encode(params)))
    layers = params["layers"]
    assert ("width1" in params) == (layers >= 1)
    assert ("width2" in params) == (layers >= 2)
    assert ("nesterov" in params) == (params["optimizer"] == "sgd")


def test_discrete_moves_offer_only_valid_values() -> None:
    enc = ModelEncoding(MIXED_SPACE)
    for block in enc.discrete_blocks:
        for row in enc.choices(block, 0.5):
            x = enc.inactive_values.copy()
            x[block.start : block.stop] = row
            assert np.allclose(enc.canonical(x)[0][block.start : block.stop], row) or (
                block.spec.condition is not None
            )
    huge = next(b for b in enc.blocks if b.spec.name == "huge")
    assert huge.grid is None and huge.start in enc.continuous_columns
    batch = next(b for b in enc.blocks if b.spec.name == "batch")
    assert len(enc.choices(batch)) == 5


def test_inactive_parameters_do_not_change_the_encoding() -> None:
    enc = ModelEncoding(MIXED_SPACE)
    base = {"lr": 0.01, "shift": 0.0, "layers": 0, "optimizer": "adam", "batch": 64.0, "huge": 10}
    a = enc.encode(base)
    full = encode_every_parameter(enc, np.random.default_rng(0).random((20, len(MIXED_SPACE))))
    full[:, :] = np.where(np.isnan(full), 0, full)
    # Whatever the children hold, with the parents of `base` they drop out.
    for row in full:
        row = row.copy()
        for name in ("lr", "shift", "layers", "optimizer", "batch", "huge"):
            block = enc.blocks[enc._index[name]]
            row[block.start : block.stop] = a[block.start : block.stop]
        np.testing.assert_allclose(enc.with_activity(row[None])[0], a)


def _mask_by_decoding(enc: ModelEncoding, x: np.ndarray) -> np.ndarray:
    """The row-by-row definition of activity: a column is active when `decode` keeps its
    parameter."""
    mask = np.ones(x.shape, dtype=bool)
    for row, out in zip(x, mask, strict=True):
        params = enc.decode(row)
        for b in enc.blocks:
            out[b.start : b.stop] = b.spec.name in params
    return mask


@settings(max_examples=200, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**32 - 1))
def test_vectorised_activity_and_bins_match_decoding(space: SearchSpace, seed: int) -> None:
    """The acquisition search's vectorised paths (active_mask, encode_every_parameter)
    make the same decisions as decoding one row at a time, on valid candidates and on
    arbitrary points of the model's input box (what a gradient step may produce)."""
    enc = ModelEncoding(space)
    rng = np.random.default_rng(seed)
    u = rng.random((64, len(space)))
    u[:8] = rng.choice([0.0, 0.5, 1.0], size=(8, len(space)))  # bin edges and ends
    full = encode_every_parameter(enc, u)
    for row, unit in zip(full, u, strict=True):
        for i, b in enumerate(enc.blocks):
            if b.spec.kind in (ParameterKind.INTEGER, ParameterKind.DISCRETE):
                expected = unit_from_value(b.spec, value_from_unit(b.spec, float(unit[i])))
                assert row[b.start] == expected, b.spec.name
    arbitrary = rng.random((64, enc.dim))
    for x in (full, arbitrary):
        np.testing.assert_array_equal(enc.active_mask(x), _mask_by_decoding(enc, x))
