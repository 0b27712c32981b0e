"""Bundled data: seeded stratified splits, standardised on the training split only."""

from __future__ import annotations

import pytest
import torch

from tunewire.trainer.tasks.datasets import LOADERS, load_splits

TABULAR = ["digits", "breast_cancer", "wine", "diabetes"]


@pytest.mark.parametrize("name", TABULAR)
def test_splits_are_60_20_20_and_standardised_on_train(name: str) -> None:
    data = LOADERS[name](0)
    n = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert abs(len(data.x_train) / n - 0.6) < 0.02
    assert abs(len(data.x_test) / n - 0.2) < 0.02
    mean = data.x_train.mean(dim=0)
    std = data.x_train.std(dim=0, unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    varying = std > 0
    assert torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-3)
    # Validation statistics are not forced to 0/1: they were not used for scaling.
    assert not torch.allclose(data.x_val.mean(dim=0), torch.zeros_like(mean), atol=1e-4)
    assert data.recon_train.min() >= 0 and data.recon_train.max() <= 1


def test_classification_splits_are_stratified() -> None:
    data = LOADERS["digits"](0)
    shares = [
        torch.bincount(y, minlength=10).float() / len(y)
        for y in (data.y_train, data.y_val, data.y_test)
    ]
    assert torch.allclose(shares[0], shares[1], atol=0.02)
    assert torch.allclose(shares[0], shares[2], atol=0.02)


def test_splits_depend_on_the_seed_only() -> None:
    a, b, c = LOADERS["wine"](3), LOADERS["wine"](3), LOADERS["wine"](4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_regression_targets_are_standardised_and_keep_their_scale() -> None:
    data = LOADERS["diabetes"](0)
    assert not data.is_classification and data.n_outputs == 1
    assert abs(float(data.y_train.mean())) < 1e-4
    assert 50 < data.target_scale < 100  # the diabetes target's spread, in its own units


def test_load_splits_is_cached_per_process() -> None:
    assert load_splits("digits", 0) is load_splits("digits", 0)
