"""The networks of the built-in tasks: an MLP and a small CNN, each split into an encoder
(the part autoencoder pretraining trains) and a head (the output layer)."""

from __future__ import annotations

import torch
from torch import nn

from tunewire.trainer.errors import TaskParameterError
from tunewire.trainer.tasks.hyperparams import NetworkConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class EncoderHeadNet(nn.Module):
    """``head(encoder(x))``. The encoder holds every hidden layer, so pretraining can train
    it as the first half of an autoencoder; with no hidden layers it is empty and the net is
    a linear (or multinomial logistic) model."""

    def __init__(self, encoder: nn.Sequential, encoded_dim: int, n_outputs: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoded_dim = encoded_dim
        self.head = nn.Linear(encoded_dim, n_outputs)

    @property
    def has_hidden_layers(self) -> bool:
        return len(self.encoder) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _dense_stack(n_in: int, config: NetworkConfig) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    width = n_in
    for units in config.units:
        layers += [nn.Linear(width, units), _ACTIVATIONS[config.activation]()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = units
    return layers, width


def build_mlp(n_inputs: int, n_outputs: int, config: NetworkConfig) -> EncoderHeadNet:
    """A fully connected network with `config.units` hidden widths (may be none)."""
    layers, width = _dense_stack(n_inputs, config)
    return EncoderHeadNet(nn.Sequential(*layers), width, n_outputs)


def build_cnn(
    input_shape: tuple[int, ...], n_outputs: int, config: NetworkConfig
) -> EncoderHeadNet:
    """`conv_layers` blocks of conv -> activation -> 2x2 max-pool (channels doubling), then
    the dense hidden layers of `config`, then the head."""
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    out_channels = config.conv_channels
    for _ in range(config.conv_layers):
        layers += [
            nn.Conv2d(channels, out_channels, config.kernel_size, padding=config.kernel_size // 2),
            _ACTIVATIONS[config.activation](),
            nn.MaxPool2d(2),
        ]
        channels, height, width = out_channels, height // 2, width // 2
        out_channels *= 2
    if height < 1 or width < 1:
        raise TaskParameterError(
            f"conv_layers={config.conv_layers}: that many 2x2 poolings shrink a "
            f"{input_shape} input to nothing"
        )
    layers.append(nn.Flatten())
    if config.dropout > 0:
        layers.append(nn.Dropout(config.dropout))
    dense, encoded = _dense_stack(channels * height * width, config)
    return EncoderHeadNet(nn.Sequential(*layers, *dense), encoded, n_outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
