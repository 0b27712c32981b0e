"""PyTorch Lightning: a callback that runs one tunewire trial inside `Trainer.fit`.

    for trial in client.worker_loop("mnist"):
        with trial, trial.heartbeat():
            callback = LightningTrialCallback(trial, monitor="val_loss")
            trainer = lightning.pytorch.Trainer(max_epochs=20, callbacks=[callback])
            trainer.fit(Model(**trial.params), datamodule)

Needs the `lightning` package (`pip install tunewire[lightning]`).
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

from tunewire.integrations.objective import (
    ObjectiveTracker,
    StepReporter,
    TrackedCallback,
    TrialTarget,
    missing_monitor,
)

__all__ = ["LightningTrialCallback", "StepReporter"]


class LightningTrialCallback(TrackedCallback, pl.Callback):
    """Reports the monitored metric to a tunewire trial after every validation epoch and
    stops training when the server says so (as Optuna's PyTorchLightningPruningCallback).

    With a client `Trial` the callback also finishes it: a NaN/inf value marks it
    infeasible and stops training; the end of `fit` completes it with the best value
    (the server records it as stopped early if it said stop); Ctrl-C hands it back. The
    report of the last epoch (or of `max_steps`) is marked as the run's last step, so a run
    that trains its full length is completed, never stopped there.
    With the reporter of a `tunewire train` task, return `callback.final_metrics` from the
    task: the worker completes the trial, and a NaN/inf value raises `TrialInfeasible`.

    Args:
        trial: a `tunewire.client.Trial` or a `tunewire.trainer.Reporter`.
        monitor: the logged metric (`self.log("val_loss", ...)` in `validation_step`),
            reported as the study's objective.
        step: the step of each report: ``epoch`` (1 after the first epoch) or
            ``global_step`` (optimizer steps; use it with `val_check_interval` < 1 so
            that several validations per epoch get steps of their own).

    Raises:
        MonitorMissing: at a validation end where `monitor` was not logged.

    Only the global-zero process reports; the stop decision is broadcast to the others.
    """

    def __init__(
        self,
        trial: TrialTarget,
        monitor: str = "val_loss",
        *,
        step: Literal["epoch", "global_step"] = "epoch",
    ) -> None:
        super().__init__()
        if step not in ("epoch", "global_step"):
            raise ValueError(f"step must be 'epoch' or 'global_step', got {step!r}")
        self.tracker = ObjectiveTracker(trial, monitor)
        self.step = step

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The sanity check before the first epoch and `trainer.validate()` are not
        # training progress.
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise missing_monitor(
                self.monitor,
                trainer.callback_metrics,
                f"log it with self.log({self.monitor!r}, ...) in validation_step",
            )
        stop = False
        if trainer.is_global_zero:
            step = trainer.current_epoch + 1 if self.step == "epoch" else trainer.global_step
            stop = self.tracker.observe(step, float(value), last_step=self._last_step(trainer))
        if trainer.strategy.broadcast(stop):
            trainer.should_stop = True

    def _last_step(self, trainer: pl.Trainer) -> bool:
        """Whether this validation ends the run's full length: its last epoch, or its last
        optimizer step when `max_steps` is set (with `step="global_step"`, the last of the
        steps the trainer plans, which validations within an epoch do not reach)."""
        if self.step == "global_step":
            return trainer.global_step >= trainer.estimated_stepping_batches
        max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
        if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
            return True
        return (
            max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.tracker.finish()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning turns Ctrl-C into SystemExit(1), which would fail the trial; another
        # worker should run it instead.
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            self.tracker.release()
