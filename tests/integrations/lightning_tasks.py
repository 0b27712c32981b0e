"""A small LightningModule on scikit-learn's digits, and `tunewire train` user tasks built on
it, written as a user's own code would be (loaded as 'path/to/lightning_tasks.py:train')."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tunewire.integrations.lightning import LightningTrialCallback, StepReporter


class DigitsClassifier(pl.LightningModule):
    """An MLP on 8x8 digits; logs `val_loss` every validation epoch. From epoch
    `nan_from_epoch` on (when > 0) the logged loss is NaN, as a diverged run's would be."""

    def __init__(self, hidden: int = 32, lr: float = 0.01, nan_from_epoch: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.lr = lr
        self.nan_from_epoch = nan_from_epoch

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if self.nan_from_epoch and self.current_epoch + 1 >= self.nan_from_epoch:
            loss = loss * float("nan")
        self.log("val_loss", loss)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def digits_loaders(seed: int = 0) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Seeded 80/20 train/validation loaders of the standardised digits."""
    x, y = load_digits(return_X_y=True)
    inputs = torch.tensor(x, dtype=torch.float32)
    inputs = (inputs - inputs.mean(0)) / (inputs.std(0) + 1e-6)
    labels = torch.tensor(y, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(order))
    train, val = order[:cut], order[cut:]
    return (
        DataLoader(TensorDataset(inputs[train], labels[train]), batch_size=64, shuffle=True),
        DataLoader(TensorDataset(inputs[val], labels[val]), batch_size=256),
    )


def fit(
    params: Mapping[str, Any],
    callback: LightningTrialCallback,
    *,
    max_epochs: int = 5,
    nan_from_epoch: int = 0,
    seed: int = 0,
) -> pl.Trainer:
    """Trains DigitsClassifier with the trial's `hidden` and `lr` on the CPU."""
    torch.manual_seed(seed)
    model = DigitsClassifier(int(params["hidden"]), float(params["lr"]), nan_from_epoch)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = digits_loaders(seed)
    trainer.fit(model, train, val)
    return trainer


def train(params: Mapping[str, Any], reporter: StepReporter) -> dict[str, float]:
    """A `tunewire train --task` user task: the worker completes the trial with the best
    validation loss the callback saw."""
    callback = LightningTrialCallback(reporter, monitor="val_loss")
    fit(params, callback, seed=getattr(reporter, "seed", 0))
    return callback.final_metrics


def train_until_nan(params: Mapping[str, Any], reporter: StepReporter) -> dict[str, float]:
    """The validation loss becomes NaN at epoch 2: the reporter raises TrialInfeasible
    through Lightning, and the worker marks the trial infeasible."""
    callback = LightningTrialCallback(reporter, monitor="val_loss")
    fit(params, callback, nan_from_epoch=2)
    return callback.final_metrics
