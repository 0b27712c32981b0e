"""What every framework callback shares: reporting one monitored metric to a trial as the
study's objective, keeping its best value, and finishing the trial."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Protocol

from tunewire.client import Trial
from tunewire.v1 import study_pb2 as pb


class StepReporter(Protocol):
    """The reporter a `tunewire train` task gets (`tunewire.trainer.Reporter`).

    Its `report` returns True when the server says stop and raises on a NaN or infinite
    value; the worker that runs the task completes the trial with what the task returns.
    """

    objective: str
    maximize: bool

    def report(
        self, step: int, metrics: Mapping[str, float], *, last_step: bool = False
    ) -> bool: ...


TrialTarget = Trial | StepReporter


class MonitorMissing(KeyError):
    """The framework logged no value of the monitored metric."""

    def __str__(self) -> str:
        return str(self.args[0])


class ObjectiveTracker:
    """Reports a framework's metric `monitor` as the study's objective and keeps its best.

    Args:
        trial: a client `Trial`, which the tracker finishes itself (complete with the best
            value, or infeasible on NaN/inf), or a `tunewire train` reporter, whose worker
            finishes the trial from what the task returns (`final_metrics`).
        monitor: the metric's name in the framework's logs (e.g. ``val_loss``).
    """

    def __init__(self, trial: TrialTarget, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        if isinstance(trial, Trial):
            objective = trial.client.study_spec(trial.study).metrics[0]
            self.objective = objective.name
            self.maximize = objective.goal == pb.GOAL_MAXIMIZE
        else:
            self.objective = trial.objective
            self.maximize = trial.maximize
        self.best: float | None = None
        self.best_step: int | None = None
        self.should_stop = False
        self.infeasible_reason = ""
        self._started = time.monotonic()

    @property
    def finished(self) -> bool:
        return isinstance(self.trial, Trial) and self.trial.finished

    def observe(self, step: int, value: float, *, last_step: bool = False) -> bool:
        """Reports `value` at `step`; returns True when training should stop: the server
        said so, or the value is NaN/inf and the trial is now infeasible. `last_step`: the
        run trained its full length, so the server does not stop it there (a stop would
        count it as stopped early).

        Raises:
            TrialInfeasible: (from a `tunewire train` reporter) the value is NaN/inf.
        """
        if self.finished:
            return True
        if isinstance(self.trial, Trial):
            if not math.isfinite(value):
                # The server refuses a non-finite report: a diverged run is a result the
                # optimiser learns to avoid, so the trial ends infeasible.
                self.infeasible_reason = (
                    f"{self.monitor} became {value} at step {step}: training diverged"
                )
                self.trial.infeasible(self.infeasible_reason)
                self.should_stop = True
                return True
            elapsed = time.monotonic() - self._started
            stop = self.trial.report(
                step, {self.objective: value}, elapsed_seconds=elapsed, last_step=last_step
            )
        else:
            stop = self.trial.report(step, {self.objective: value}, last_step=last_step)
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best, self.best_step = value, step
        self.should_stop = self.should_stop or stop
        return self.should_stop

    @property
    def final_metrics(self) -> dict[str, float]:
        """``{objective: best value}``, what a `tunewire train` task returns; empty when
        nothing was reported."""
        return {} if self.best is None else {self.objective: self.best}

    def finish(self) -> None:
        """Completes a client `Trial` with the best value (stopped early when the server
        said stop). Does nothing for a reporter or a trial already finished.

        Raises:
            MonitorMissing: training ended before any value was reported (the trial is
                failed with that reason first).
        """
        if not isinstance(self.trial, Trial) or self.trial.finished:
            return
        if self.best is None:
            reason = f"training ended before any {self.monitor!r} was reported"
            self.trial.fail(reason)
            raise MonitorMissing(reason)
        self.trial.complete(self.final_metrics)

    def release(self) -> None:
        """Hands an unfinished client `Trial` back (training was interrupted)."""
        if isinstance(self.trial, Trial) and not self.trial.finished:
            self.trial.release()


class TrackedCallback:
    """What both framework callbacks show of their tracker."""

    tracker: ObjectiveTracker

    @property
    def monitor(self) -> str:
        return self.tracker.monitor

    @property
    def final_metrics(self) -> dict[str, float]:
        """``{objective: best value}``: what a `tunewire train` task returns."""
        return self.tracker.final_metrics


def missing_monitor(monitor: str, logged: Mapping[str, object], how_to_log: str) -> MonitorMissing:
    """The error for a monitored metric the framework did not log, naming what it did log."""
    names = ", ".join(sorted(logged)) or "nothing"
    return MonitorMissing(
        f"the monitored metric {monitor!r} was not logged (logged: {names}); {how_to_log}, "
        "or pass monitor= the name of one that is"
    )
