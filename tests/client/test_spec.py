"""The client's reading of spec files and dicts: every key checked before anything is sent,
and values that come back in the types the study declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewire.client import SpecError, TuningClient, load_spec_file, spec_from_dict

BASE = {
    "parameters": [{"name": "lr", "type": "float", "min": 1e-4, "max": 0.1, "scale": "log"}],
    "metrics": [{"name": "val_loss", "goal": "minimize"}],
}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"algoritm": "random"}, "unknown key 'algoritm' (did you mean 'algorithm'?)"),
        ({"max_trial": 3}, "(did you mean 'max_trials'?)"),
        ({"max_trials": 2.5}, "max_trials must be a whole number"),
        ({"early_stopping": {"rule": "medain"}}, "(did you mean 'median'?)"),
        ({"early_stopping": {"rule": "median", "grace_period": 2}}, "grace_period_steps"),
        ({"early_stopping": {"rule": "median", "use_step_values": 1}}, "true or false"),
        ({"metrics": [{"name": "l", "gaol": "min"}]}, "(did you mean 'goal'?)"),
        ({"seed": 2**70}, "study spec"),
        ({"metrics": [{"name": None, "goal": "min"}]}, "needs a name"),
        ({"metrics": [{"name": "l"}]}, "goal must be minimize or maximize, got None"),
        ({"metrics": [{"name": "l", "goal": "maxwell"}]}, "got 'maxwell'"),
        ({"metrics": [{"name": "l", "goal": "minimum_ish"}]}, "got 'minimum_ish'"),
        ({"early_stopping": {"rule": "threshold"}}, "give its bound"),
    ],
)
def test_a_spec_dict_is_checked_key_by_key(change: dict, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**BASE, **change})
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("parameter", "needle"),
    [
        ({"name": "lr", "type": "float", "min": 0, "max": 1, "sclae": "log"}, "'scale'?"),
        ({"name": "n", "type": "int", "min": 1.5, "max": 4}, "min must be a whole number"),
        ({"name": "n", "type": "int", "max": 4}, "'min' is required"),
        ({"name": None, "type": "int", "min": 1, "max": 4}, "needs a name"),
        ({"name": "c", "type": "categorical", "values": "abc"}, "values must be a list"),
        ({"name": "c", "type": "categorical", "values": [1, 2]}, "must be strings"),
        ({"name": "d", "type": "discrete", "values": ["a"]}, "must be a number"),
        (
            {"name": "c", "type": "float", "min": 0, "max": 1, "condition": {"parnet": "x"}},
            "(did you mean 'parent'?)",
        ),
    ],
)
def test_parameters_are_checked_key_by_key(parameter: dict, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict({**BASE, "parameters": [parameter]})
    assert needle in str(err.value)


def test_a_spec_file_that_is_not_yaml_says_where_and_why(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("parameters: [\n  - {name: x\n")
    with pytest.raises(SpecError) as err:
        load_spec_file(path)
    assert str(err.value) == (
        f"{path}: not valid YAML: line 2, column 3: expected the node content, but found '-'"
    )
    path.write_text("metrics:\n  - {name: loss, goal: minimize}\n  goal: maximize\n")
    with pytest.raises(SpecError, match="not valid YAML: line 3, column 3: "):
        load_spec_file(path)


def test_values_come_back_as_the_declared_types(client: TuningClient) -> None:
    """The README's example: batch sizes as Python ints (DataLoader refuses 64.0)."""
    client.create_study(
        "typed",
        {
            "parameters": [
                {"name": "batch_size", "type": "discrete", "values": [16, 32, 64]},
                {"name": "ratio", "type": "discrete", "values": [0.5, 1, 2]},
                {"name": "layers", "type": "int", "min": 0, "max": 3},
                {"name": "lr", "type": "float", "min": 1e-4, "max": 0.1, "scale": "log"},
            ],
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "random",
        },
    )
    for _ in range(5):
        (trial,) = client.suggest("typed", "w")
        assert type(trial.params["batch_size"]) is int
        assert type(trial.params["layers"]) is int
        assert type(trial.params["ratio"]) is float
        assert type(trial.params["lr"]) is float
        trial.complete({"loss": 1.0})
    records = client.list_trials("typed")
    assert all(type(r.params["batch_size"]) is int for r in records)
