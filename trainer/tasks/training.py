"""Training of a built-in task's network: optional autoencoder pretraining, then supervised
fine-tuning with per-epoch reports, patience early stopping and the server's stop decisions.

Everything random is seeded from `reporter.seed`, so equal parameters give equal losses on
CPU. Data sets are small, so they are moved to the device once (through pinned memory with
a non-blocking copy on CUDA) and batches are sliced there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tunewire.trainer.errors import TrialInfeasible
from tunewire.trainer.reporter import Metrics, Reporter
from tunewire.trainer.tasks.datasets import DataSplits
from tunewire.trainer.tasks.hyperparams import NetworkConfig
from tunewire.trainer.tasks.models import EncoderHeadNet, count_parameters
from tunewire.trainer.tasks.objectives import Objective, objective_of

EVAL_BATCH = 1024


@dataclass(frozen=True)
class DeviceData:
    """The splits on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    recon_train: torch.Tensor


def to_device(data: DataSplits, device: torch.device) -> DeviceData:
    """Copies the splits to `device`; on CUDA through pinned memory, without blocking."""

    def move(t: torch.Tensor) -> torch.Tensor:
        if device.type == "cuda":
            return t.pin_memory().to(device, non_blocking=True)
        return t.to(device)

    return DeviceData(
        move(data.x_train),
        move(data.y_train),
        move(data.x_val),
        move(data.y_val),
        move(data.x_test),
        move(data.y_test),
        move(data.recon_train),
    )


def make_optimizer(params: Iterator[nn.Parameter], config: NetworkConfig) -> torch.optim.Optimizer:
    """SGD with momentum, Adam (L2 weight decay) or AdamW (decoupled weight decay)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


class _Precision:
    """Autocast and gradient scaling when mixed precision runs (CUDA and --amp only).

    bfloat16 needs no loss scaling; float16 (older GPUs) does. Only native bfloat16 counts:
    `is_bf16_supported()` alone also says yes on GPUs that only emulate it (V100, T4): no
    bfloat16 tensor cores there, so no speed-up, while float16 has them.
    """

    def __init__(self, reporter: Reporter) -> None:
        self.enabled = reporter.use_amp
        self.device_type = reporter.device.type
        self.dtype = torch.float16
        if self.enabled and torch.cuda.is_bf16_supported(including_emulation=False):
            self.dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype is torch.float16
        )

    def autocast(self) -> AbstractContextManager[object]:
        if not self.enabled:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def _batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _loss(output: torch.Tensor, target: torch.Tensor, classification: bool) -> torch.Tensor:
    if classification:
        return F.cross_entropy(output.float(), target)
    return F.mse_loss(output.float().squeeze(-1), target)


def _finite_mean(total: torch.Tensor, count: int, what: str, epoch: int) -> float:
    value = float(total.item()) / max(count, 1)
    if value != value or value in (float("inf"), float("-inf")):
        raise TrialInfeasible(f"{what} became {value} at epoch {epoch}: training diverged")
    return value


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    data: DataSplits,
    precision: _Precision,
) -> tuple[float, float]:
    """Mean loss and accuracy (classification) or RMSE in target units (regression)."""
    model.eval()
    total = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_BATCH):
        xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
        with precision.autocast():
            out = model(xb)
        total += _loss(out, yb, data.is_classification) * len(xb)
        if data.is_classification:
            correct += (out.argmax(dim=1) == yb).sum()
    loss = float(total.item()) / len(x)
    if data.is_classification:
        return loss, float(correct.item()) / len(x)
    return loss, (max(loss, 0.0) ** 0.5) * data.target_scale


def pretrain_autoencoder(
    model: EncoderHeadNet,
    data: DataSplits,
    tensors: DeviceData,
    config: NetworkConfig,
    reporter: Reporter,
    generator: torch.Generator,
    precision: _Precision,
) -> int:
    """Trains the hidden layers as the encoder of an autoencoder whose linear decoder
    reconstructs the inputs scaled to [0, 1], with reconstruction cross-entropy (binary
    cross-entropy per input). Returns the epochs run (0 when there is nothing to pretrain).
    """
    if config.pretrain_epochs == 0 or not model.has_hidden_layers:
        return 0
    decoder = nn.Linear(model.encoded_dim, data.n_inputs).to(reporter.device)
    params = list(model.encoder.parameters()) + list(decoder.parameters())
    optimizer = make_optimizer(iter(params), config)
    n = len(tensors.x_train)
    for epoch in range(1, config.pretrain_epochs + 1):
        model.train()
        total = torch.zeros((), device=reporter.device)
        for idx in _batches(n, config.batch_size, generator, reporter.device):
            with precision.autocast():
                logits = decoder(model.encoder(tensors.x_train[idx]))
            loss = F.binary_cross_entropy_with_logits(logits.float(), tensors.recon_train[idx])
            precision.step(loss, optimizer)
            total += loss.detach() * len(idx)
        recon = _finite_mean(total, n, "reconstruction loss", epoch)
        reporter.status(f"pretrain {epoch}/{config.pretrain_epochs} recon {recon:.4f}")
    return config.pretrain_epochs


@dataclass(frozen=True)
class FitResult:
    best_metrics: Metrics  # the validation measures of the best epoch
    best_epoch: int
    epochs_trained: int
    stopped_by: str  # "patience", "server" or "max_epochs"


def fit(
    model: EncoderHeadNet,
    data: DataSplits,
    tensors: DeviceData,
    config: NetworkConfig,
    reporter: Reporter,
    generator: torch.Generator,
    precision: _Precision,
    objective: Objective,
) -> FitResult:
    """Supervised training; leaves the model with the weights of the epoch with the best
    value of `objective`, which every report carries under the study's name for it
    (`reporter.objective`) besides the task's own names."""
    optimizer = make_optimizer(model.parameters(), config)
    score_name = "val_accuracy" if data.is_classification else "val_rmse"
    n = len(tensors.x_train)
    best: float | None = None
    best_metrics: Metrics = {}
    best_epoch = 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    stopped_by = "max_epochs"
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total = torch.zeros((), device=reporter.device)
        for idx in _batches(n, config.batch_size, generator, reporter.device):
            with precision.autocast():
                out = model(tensors.x_train[idx])
            loss = _loss(out, tensors.y_train[idx], data.is_classification)
            precision.step(loss, optimizer)
            total += loss.detach() * len(idx)
        train_loss = _finite_mean(total, n, "training loss", epoch)
        val_loss, val_score = evaluate(model, tensors.x_val, tensors.y_val, data, precision)
        measured = {"val_loss": val_loss, score_name: val_score}
        value = measured[reporter.objective] = measured[objective.measure]
        # report() raises TrialInfeasible on a non-finite value.
        stop = reporter.report(
            epoch, {**measured, "train_loss": train_loss}, last_step=epoch == config.max_epochs
        )
        if best is None or (value > best if objective.maximize else value < best):
            best, best_metrics, best_epoch = value, measured, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stop:
            stopped_by = "server"
            break
        if epoch - best_epoch >= config.patience:
            stopped_by = "patience"
            break
    model.load_state_dict(best_state)
    return FitResult(best_metrics, best_epoch, epoch, stopped_by)


def train_network(
    model: EncoderHeadNet,
    data: DataSplits,
    config: NetworkConfig,
    reporter: Reporter,
) -> Metrics:
    """Pretrains (optionally), fits and tests `model`; returns the trial's final metrics.

    The model must have been built after `torch.manual_seed(reporter.seed)` for
    reproducible initial weights.

    Raises:
        TaskMetricError: the study's objective is none of the task's validation measures.
    """
    objective = objective_of(
        reporter.objective,
        classification=data.is_classification,
        trainer=f"a network on {data.name}",
    )
    started = time.perf_counter()
    model.to(reporter.device)
    tensors = to_device(data, reporter.device)
    generator = torch.Generator().manual_seed(reporter.seed)
    precision = _Precision(reporter)
    reporter.total_steps = config.max_epochs
    pretrained = pretrain_autoencoder(model, data, tensors, config, reporter, generator, precision)
    result = fit(model, data, tensors, config, reporter, generator, precision, objective)
    test_loss, test_score = evaluate(model, tensors.x_test, tensors.y_test, data, precision)
    metrics: Metrics = {
        **result.best_metrics,
        "test_loss": test_loss,
        "test_accuracy" if data.is_classification else "test_rmse": test_score,
        "epochs_trained": float(result.epochs_trained),
        "best_epoch": float(result.best_epoch),
        "pretrain_epochs_run": float(pretrained),
        "train_seconds": time.perf_counter() - started,
        "n_params": float(count_parameters(model)),
    }
    reporter.status(f"stopped by {result.stopped_by} after {result.epochs_trained} epochs")
    return metrics
