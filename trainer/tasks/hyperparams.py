"""The network hyperparameters the built-in tasks understand, parsed from a trial's params.

Every knob has a default (the usual starting point), so a user's search space may tune any
subset of them. Unknown names and out-of-range values raise TaskParameterError with a
message that says what to fix: a typo in a space file must not silently train defaults.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from tunewire.trainer.errors import TaskParameterError

MAX_HIDDEN_LAYERS = 6
MAX_UNITS = 8192
OPTIMIZERS = ("sgd", "adam", "adamw")
ACTIVATIONS = ("relu", "tanh", "gelu")
DEFAULT_UNITS = 128
# Names from other libraries, suggested in the error message (never accepted silently: one
# spelling per knob keeps spaces and results comparable).
COMMON_SPELLINGS = {
    "learning_rate": "lr",
    "optimiser": "optimizer",
    "epochs": "max_epochs",
    "n_epochs": "max_epochs",
    "layers": "hidden_layers",
    "n_layers": "hidden_layers",
    "num_layers": "hidden_layers",
    "neurons": "units",
    "width": "units",
    "hidden_units": "units",
    "batch": "batch_size",
    "l2": "weight_decay",
}


@dataclass(frozen=True)
class NetworkConfig:
    """One configuration of a feed-forward (or small convolutional) network and its training.

    Attributes:
        hidden_layers: 0 gives a linear / logistic model.
        units: width of each hidden layer, ``len(units) == hidden_layers``. From the
            parameters ``units_k`` (layer k, conditional on hidden_layers >= k) or ``units``
            (one shared width); ``units_k`` wins where both are given.
        optimizer: ``sgd`` (with ``momentum``), ``adam`` or ``adamw``.
        max_epochs, patience: training stops after ``patience`` epochs without a better
            validation loss (the best weights are restored), after ``max_epochs``, or
            when the server says stop.
        pretrain_epochs: epochs of autoencoder pretraining of the hidden layers with
            reconstruction cross-entropy before fine-tuning; 0 = off.
        conv_layers, conv_channels, kernel_size: the convolutional front of ``mnist-cnn``
            (channels double after each block); ignored by the MLP tasks.
    """

    hidden_layers: int = 1
    units: tuple[int, ...] = (DEFAULT_UNITS,)
    batch_size: int = 32
    lr: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.0
    activation: str = "relu"
    max_epochs: int = 40
    patience: int = 5
    pretrain_epochs: int = 0
    conv_layers: int = 2
    conv_channels: int = 16
    kernel_size: int = 3


SCALAR_NAMES = tuple(f.name for f in fields(NetworkConfig) if f.name != "units")
UNIT_NAMES = ("units",) + tuple(f"units_{k}" for k in range(1, MAX_HIDDEN_LAYERS + 1))
CNN_NAMES = ("conv_layers", "conv_channels", "kernel_size")


def known_names(*, convolutional: bool) -> tuple[str, ...]:
    """The parameter names a task accepts."""
    names = UNIT_NAMES + SCALAR_NAMES
    return names if convolutional else tuple(n for n in names if n not in CNN_NAMES)


def _whole(name: str, value: Any, low: int, high: int) -> int:
    """Integers arrive as int, or as float from a discrete parameter (32.0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskParameterError(f"parameter {name!r} must be a whole number, got {value!r}")
    if not math.isfinite(value) or value != int(value):
        raise TaskParameterError(f"parameter {name!r} must be a whole number, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise TaskParameterError(f"parameter {name!r} must be in [{low}, {high}], got {number}")
    return number


def _real(name: str, value: Any, low: float, high: float, *, open_high: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskParameterError(f"parameter {name!r} must be a number, got {value!r}")
    number = float(value)
    too_high = number >= high if open_high else number > high
    if not math.isfinite(number) or number < low or too_high:
        bracket = ")" if open_high else "]"
        raise TaskParameterError(
            f"parameter {name!r} must be in [{low:g}, {high:g}{bracket}, got {value!r}"
        )
    return number


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    text = str(value).lower()
    if text not in choices:
        raise TaskParameterError(
            f"parameter {name!r} must be one of {list(choices)}, got {value!r}"
        )
    return text


def _odd_kernel(value: int) -> int:
    if value % 2 == 0:
        raise TaskParameterError(
            f"parameter 'kernel_size' must be odd (3, 5, 7) so that 'same' padding exists, "
            f"got {value}"
        )
    return value


@dataclass(frozen=True)
class Knob:
    """What one hyperparameter accepts: a whole number or a real number in [low, high]
    (high excluded when `open_high`), or one of `choices`."""

    kind: Literal["whole", "real", "choice"]
    low: float = 0.0
    high: float = 0.0
    open_high: bool = False
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> int | float | str:
        """The value as the network takes it; raises TaskParameterError when out of range."""
        if self.kind == "whole":
            number = _whole(name, value, int(self.low), int(self.high))
            return _odd_kernel(number) if name == "kernel_size" else number
        if self.kind == "real":
            return _real(name, value, self.low, self.high, open_high=self.open_high)
        return _choice(name, value, self.choices)


# Every parameter a task understands, with what it accepts; both trials' values and search
# spaces (before any training) are checked against this one table.
KNOBS: dict[str, Knob] = {
    "hidden_layers": Knob("whole", 0, MAX_HIDDEN_LAYERS),
    **{name: Knob("whole", 1, MAX_UNITS) for name in UNIT_NAMES},
    "batch_size": Knob("whole", 1, 1 << 20),
    "lr": Knob("real", 1e-12, 10.0),
    "optimizer": Knob("choice", choices=OPTIMIZERS),
    "momentum": Knob("real", 0.0, 1.0, open_high=True),
    "weight_decay": Knob("real", 0.0, 1.0),
    "dropout": Knob("real", 0.0, 1.0, open_high=True),
    "activation": Knob("choice", choices=ACTIVATIONS),
    "max_epochs": Knob("whole", 1, 100_000),
    "patience": Knob("whole", 1, 100_000),
    "pretrain_epochs": Knob("whole", 0, 100_000),
    "conv_layers": Knob("whole", 1, 4),
    "conv_channels": Knob("whole", 1, 1024),
    "kernel_size": Knob("whole", 1, 7),
}


def _check_names(params: Mapping[str, Any], allowed: Sequence[str], task: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = [COMMON_SPELLINGS[name]] if name in COMMON_SPELLINGS else []
        close = close or difflib.get_close_matches(name, allowed, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TaskParameterError(
        f"task {task!r} does not know the parameter(s) {', '.join(hints)}; "
        f"it accepts {', '.join(allowed)}"
    )


def parse_network_config(
    params: Mapping[str, Any],
    *,
    task: str,
    defaults: NetworkConfig,
    convolutional: bool = False,
) -> NetworkConfig:
    """Builds the configuration of one trial.

    Args:
        params: the trial's parameters; absent ones take the task's defaults.
        task: the task name, for error messages.
        defaults: the task's defaults (e.g. its number of epochs).
        convolutional: whether the conv_* parameters are allowed.

    Raises:
        TaskParameterError: an unknown name or a value out of range.

    Example:
        >>> parse_network_config({"hidden_layers": 2, "units_1": 64.0, "units": 32},
        ...                      task="digits-mlp", defaults=NetworkConfig()).units
        (64, 32)
    """
    _check_names(params, known_names(convolutional=convolutional), task)
    changes: dict[str, Any] = {
        name: KNOBS[name].check(name, params[name]) for name in SCALAR_NAMES if name in params
    }
    config = replace(defaults, **changes)
    shared = params.get("units")
    shared_width = (
        KNOBS["units"].check("units", shared)
        if shared is not None
        else (defaults.units[0] if defaults.units else DEFAULT_UNITS)
    )
    widths = []
    for k in range(1, config.hidden_layers + 1):
        value = params.get(f"units_{k}")
        width = shared_width if value is None else KNOBS[f"units_{k}"].check(f"units_{k}", value)
        widths.append(int(width))
    return replace(config, units=tuple(widths))


def check_space(
    domains: Sequence[tuple[str, str, Sequence[Any]]], *, task: str, convolutional: bool
) -> None:
    """Checks, before any training, that every value a search space can give is one the
    task accepts.

    Args:
        domains: (name, kind, values) for each parameter of the space: kind ``float`` or
            ``int`` with the two ends of the range, ``discrete`` or ``categorical`` with
            every value.
        task: the task name, for error messages.
        convolutional: whether the conv_* parameters are allowed.

    Raises:
        TaskParameterError: an unknown name (with the closest known one), or a parameter
            whose range reaches values the task refuses.

    Example: an int parameter ``hidden_layers`` in [0, 9] is refused, as a trial with 7
    hidden layers would be (the tasks build at most 6).
    """
    _check_names(
        dict.fromkeys(n for n, _, _ in domains), known_names(convolutional=convolutional), task
    )
    for name, kind, values in domains:
        knob = KNOBS[name]
        try:
            if knob.kind == "whole" and kind == "float":
                raise TaskParameterError(
                    f"parameter {name!r} must be a whole number: make it type int or discrete"
                )
            if knob.kind == "choice" and kind != "categorical":
                raise TaskParameterError(
                    f"parameter {name!r} must be one of {list(knob.choices)}: make it categorical"
                )
            if name == "kernel_size" and kind == "int" and values[0] != values[-1]:
                raise TaskParameterError(
                    "parameter 'kernel_size' must be odd: make it discrete, e.g. values [3, 5, 7]"
                )
            for value in values:
                knob.check(name, value)
        except TaskParameterError as exc:
            raise TaskParameterError(
                f"the search space does not fit task {task!r}: {exc}"
            ) from None
