"""The object a training function gets besides its parameters: where to train, with which
seed, and how to report progress (and hear the server's decision to stop).

Both the built-in tasks and user tasks talk to the worker only through this class, so a user
task is tested the same way as a built-in one (`Reporter()` with no server works offline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tunewire.trainer.errors import TrialInfeasible

Params = Mapping[str, Any]
Metrics = dict[str, float]


class TrainFunction(Protocol):
    """A task: trains one configuration and returns its final metrics.

    Args:
        params: the trial's hyperparameters (name -> float | int | str); inactive
            conditional parameters are absent.
        reporter: call `reporter.report(epoch, {"val_loss": ...})` after every epoch and
            stop when it returns True.

    Returns:
        Final metrics, including the study's objective (e.g. ``val_loss``); extra metrics
        (``test_accuracy``...) are stored with the trial. None means "the last report".
    """

    def __call__(self, params: Params, reporter: Reporter) -> Mapping[str, float] | None: ...


class ProgressSink(Protocol):
    """Where the reporter shows progress (a terminal bar or log lines, see progress.py)."""

    def epoch(
        self, step: int, total: int, metrics: Mapping[str, float], best: float | None
    ) -> None: ...

    def status(self, text: str) -> None: ...


# Sends one measurement to the server and returns its stop decision.
# (step, metrics, last step of a full-length run) -> whether the server says stop.
SendMeasurement = Callable[[int, Metrics, bool], bool]


@dataclass
class Reporter:
    """Training context and progress channel of one trial.

    Attributes:
        device: where to train (``cpu`` or ``cuda:N``).
        seed: the worker's seed; seed torch with it so that equal parameters give equal
            losses on CPU.
        amp: whether mixed precision was asked for (only meaningful on CUDA).
        objective: the metric the study optimises; `report` rejects a non-finite value
            of it by raising TrialInfeasible.
        maximize: whether the study maximises the objective (the server's spec says).
        trial_id: the server's trial id (0 when run offline).
        total_steps: the planned number of steps (epochs), for the progress bar; a task
            sets it when it knows.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    amp: bool = False
    objective: str = "val_loss"
    maximize: bool = False
    trial_id: int = 0
    total_steps: int = 0
    send: SendMeasurement | None = None
    progress: ProgressSink | None = None
    history: list[tuple[int, Metrics]] = field(default_factory=list)
    stop_requested: bool = False

    @property
    def use_amp(self) -> bool:
        """Mixed precision is used only on CUDA: CPU autocast is slower for these models."""
        return self.amp and self.device.type == "cuda"

    @property
    def best(self) -> float | None:
        """The best objective value reported so far (the largest when maximising)."""
        values = [m[self.objective] for _, m in self.history if self.objective in m]
        if not values:
            return None
        return max(values) if self.maximize else min(values)

    @property
    def last_metrics(self) -> Metrics | None:
        return dict(self.history[-1][1]) if self.history else None

    def report(self, step: int, metrics: Mapping[str, float], *, last_step: bool = False) -> bool:
        """Records one measurement (usually one epoch) and returns True when to stop.
        `last_step`: the run's last step (it trained to its full length); the server does
        not stop a trial there.

        Raises:
            TrialInfeasible: a metric is NaN or infinite (the training diverged).
        """
        clean: Metrics = {}
        for name, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                raise TrialInfeasible(f"{name} became {number} at step {step}: training diverged")
            clean[name] = number
        self.history.append((step, clean))
        if self.progress is not None:
            self.progress.epoch(step, self.total_steps, clean, self.best)
        if self.send is not None and self.send(step, clean, last_step):
            self.stop_requested = True
        return self.stop_requested

    def status(self, text: str) -> None:
        """Shows a phase that sends nothing to the server (e.g. autoencoder pretraining)."""
        if self.progress is not None:
            self.progress.status(text)
