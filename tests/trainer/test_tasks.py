"""Task loading, default specs, devices and progress output."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tunewire.server.domain.study import StudySpec
from tunewire.trainer.devices import DeviceError, parse_devices, resolve_device
from tunewire.trainer.errors import TaskLoadError, TaskParameterError
from tunewire.trainer.progress import BarProgress
from tunewire.trainer.tasks import BUILTIN_TASKS, load_task

SEED_ARTICLE_KNOBS = {
    "hidden_layers",
    "units_1",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "dropout",
    "pretrain_epochs",
}


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_default_specs_are_valid_studies_the_task_accepts(name: str) -> None:
    task = BUILTIN_TASKS[name]
    spec = task.default_spec()
    StudySpec.from_dict(spec)  # what the server will check
    task.check_spec(spec)
    names = {p["name"] for p in spec["parameters"]}
    assert SEED_ARTICLE_KNOBS <= names
    assert spec["metrics"] == [{"name": "val_loss", "goal": "minimize"}]


def test_digits_space_covers_zero_to_six_hidden_layers_with_conditional_widths() -> None:
    params = {p["name"]: p for p in BUILTIN_TASKS["digits-mlp"].default_spec()["parameters"]}
    assert (params["hidden_layers"]["min"], params["hidden_layers"]["max"]) == (0, 6)
    for k in range(1, 7):
        assert params[f"units_{k}"]["condition"] == {"parent": "hidden_layers", "min": k}
        assert params[f"units_{k}"]["scale"] == "log"
    assert params["optimizer"]["values"] == ["sgd", "adam", "adamw"]
    assert params["lr"]["min"] == 1e-4 and params["lr"]["max"] == 0.1


def _spec(*parameters: dict[str, object]) -> dict[str, object]:
    return {"parameters": list(parameters), "metrics": [{"name": "val_loss", "goal": "minimize"}]}


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (
            {"name": "learning_rate", "type": "float", "min": 1e-4, "max": 0.1},
            "does not know the parameter(s) 'learning_rate' (did you mean 'lr'?)",
        ),
        (
            {"name": "hidden_layers", "type": "int", "min": 0, "max": 9},
            "does not fit task 'digits-mlp': parameter 'hidden_layers' must be in [0, 6], got 9",
        ),
        (
            {"name": "dropout", "type": "float", "min": 0.0, "max": 1.0},
            "parameter 'dropout' must be in [0, 1), got 1.0",
        ),
        (
            {"name": "batch_size", "type": "float", "min": 16, "max": 64},
            "'batch_size' must be a whole number: make it type int or discrete",
        ),
        (
            {"name": "optimizer", "type": "categorical", "values": ["adam", "rmsprop"]},
            "must be one of ['sgd', 'adam', 'adamw'], got 'rmsprop'",
        ),
    ],
)
def test_check_spec_refuses_names_and_ranges_the_task_cannot_train(
    parameter: dict[str, object], message: str
) -> None:
    with pytest.raises(TaskParameterError) as info:
        BUILTIN_TASKS["digits-mlp"].check_spec(_spec(parameter))
    assert message in str(info.value)


def test_check_spec_reads_the_servers_spec_too() -> None:
    """The worker checks the study it joins, whose spec comes from the server."""
    from tunewire.client import spec_from_dict

    task = BUILTIN_TASKS["mnist-cnn"]
    good = _spec({"name": "kernel_size", "type": "discrete", "values": [3, 5, 7]})
    task.check_spec(spec_from_dict(good))
    even = _spec({"name": "kernel_size", "type": "int", "min": 3, "max": 7})
    with pytest.raises(TaskParameterError, match="'kernel_size' must be odd: make it discrete"):
        task.check_spec(spec_from_dict(even))


def test_load_task_accepts_builtin_module_and_file_forms(tmp_path: Path) -> None:
    assert load_task("digits-mlp") is BUILTIN_TASKS["digits-mlp"]
    assert load_task("tests.trainer.user_tasks:quadratic").__name__ == "quadratic"
    path = tmp_path / "mine.py"
    path.write_text("def train(params, reporter):\n    return {'val_loss': 1.0}\n")
    assert load_task(f"{path}:train")({}, None) == {"val_loss": 1.0}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digits", "neither a built-in task (digits-mlp"),
        ("no_such_module:train", "cannot import 'no_such_module'"),
        ("tests.trainer.user_tasks:nothing", "has no function 'nothing'"),
        ("/nonexistent/x.py:train", "no file /nonexistent/x.py"),
    ],
)
def test_bad_task_names_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(TaskLoadError, match=message.replace("(", r"\(")):
        load_task(text)


def test_devices() -> None:
    assert parse_devices("cpu*2") == ["cpu", "cpu"]
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    assert str(resolve_device("cpu")) == "cpu"
    with pytest.raises(DeviceError, match="cpu\\*2"):
        parse_devices("cpu*x")
    with pytest.raises(DeviceError, match="runs on cpu or cuda"):
        resolve_device("meta")
    if not __import__("torch").cuda.is_available():
        assert str(resolve_device("auto")) == "cpu"
        with pytest.raises(DeviceError, match="CUDA is not available"):
            parse_devices("cuda:0,cuda:1")


def test_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = BarProgress(7, "val_loss", stream)
    bar.epoch(10, 40, {"val_loss": 0.25, "train_loss": 0.3}, 0.2)
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[K")
    assert "trial 7 [#####---------------] 10/40 val_loss 0.2500 train 0.3000 best 0.2000" in text
    assert text.endswith("\n")
