"""Network construction of the built-in tasks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunewire.trainer.errors import TaskParameterError
from tunewire.trainer.tasks.hyperparams import NetworkConfig
from tunewire.trainer.tasks.models import build_cnn, build_mlp, count_parameters


def test_zero_hidden_layers_is_a_linear_model() -> None:
    model = build_mlp(64, 10, NetworkConfig(hidden_layers=0, units=()))
    assert not model.has_hidden_layers
    assert count_parameters(model) == 64 * 10 + 10


def test_mlp_has_one_linear_layer_per_width_and_dropout() -> None:
    model = build_mlp(64, 10, NetworkConfig(hidden_layers=3, units=(256, 32, 16), dropout=0.1))
    linears = [m for m in model.encoder if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [256, 32, 16]
    assert sum(isinstance(m, nn.Dropout) for m in model.encoder) == 3
    assert model(torch.zeros(5, 64)).shape == (5, 10)


def test_cnn_output_and_encoder_dimension() -> None:
    config = NetworkConfig(conv_layers=2, conv_channels=8, hidden_layers=1, units=(32,))
    model = build_cnn((1, 28, 28), 10, config)
    assert model.encoded_dim == 32
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_too_many_poolings_is_a_parameter_error() -> None:
    with pytest.raises(TaskParameterError, match="conv_layers=4"):
        build_cnn((1, 8, 8), 10, NetworkConfig(conv_layers=4, hidden_layers=0, units=()))
