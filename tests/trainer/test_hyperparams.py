"""Parsing of trial parameters into a network configuration, and its error messages."""

from __future__ import annotations

import pytest

from tunewire.trainer.errors import TaskParameterError
from tunewire.trainer.tasks.hyperparams import NetworkConfig, known_names, parse_network_config

DEFAULTS = NetworkConfig(max_epochs=40, patience=5)


def parse(params: dict[str, object], convolutional: bool = False) -> NetworkConfig:
    return parse_network_config(
        params, task="digits-mlp", defaults=DEFAULTS, convolutional=convolutional
    )


def test_absent_parameters_take_the_task_defaults() -> None:
    config = parse({})
    assert config == DEFAULTS
    assert config.units == (128,)


def test_per_layer_units_win_over_the_shared_width() -> None:
    config = parse({"hidden_layers": 3, "units": 32, "units_2": 64})
    assert config.units == (32, 64, 32)


def test_zero_hidden_layers_ignores_inactive_widths() -> None:
    assert parse({"hidden_layers": 0, "units_1": 64}).units == ()


def test_whole_floats_from_discrete_parameters_become_ints() -> None:
    config = parse({"batch_size": 64.0, "hidden_layers": 2.0, "units_1": 16.0})
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.units == (16, 128)


def test_every_seed_article_knob_is_accepted() -> None:
    config = parse(
        {
            "hidden_layers": 2,
            "units_1": 256,
            "units_2": 16,
            "batch_size": 32,
            "lr": 0.01,
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "dropout": 0.2,
            "max_epochs": 10,
            "patience": 3,
            "pretrain_epochs": 2,
            "activation": "tanh",
        }
    )
    assert (config.optimizer, config.max_epochs, config.pretrain_epochs) == ("sgd", 10, 2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": 0.1}, "'learning_rate' (did you mean 'lr'?)"),
        ({"optimiser": "adam"}, "did you mean 'optimizer'?"),
        ({"hidden_layers": 7}, "'hidden_layers' must be in [0, 6], got 7"),
        ({"batch_size": 32.5}, "'batch_size' must be a whole number"),
        ({"optimizer": "rmsprop"}, "must be one of ['sgd', 'adam', 'adamw'], got 'rmsprop'"),
        ({"dropout": 1.0}, "'dropout' must be in [0, 1), got 1.0"),
        ({"lr": 0.0}, "'lr' must be in"),
        ({"lr": "fast"}, "'lr' must be a number, got 'fast'"),
        ({"conv_layers": 2}, "does not know the parameter(s) 'conv_layers'"),
    ],
)
def test_bad_parameters_say_what_to_fix(params: dict[str, object], message: str) -> None:
    with pytest.raises(TaskParameterError) as info:
        parse(params)
    assert message in str(info.value)


def test_convolutional_names_only_for_cnn_tasks() -> None:
    assert "conv_layers" in known_names(convolutional=True)
    assert "conv_layers" not in known_names(convolutional=False)
    with pytest.raises(TaskParameterError, match="kernel_size' must be odd"):
        parse({"kernel_size": 4}, convolutional=True)
