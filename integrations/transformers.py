"""Hugging Face Transformers: a `TrainerCallback` that runs one tunewire trial inside
`transformers.Trainer.train`, with evaluation steps as the trial's steps.

    for trial in client.worker_loop("sst2"):
        with trial, trial.heartbeat():
            args = TrainingArguments("out", eval_strategy="steps", eval_steps=100,
                                     learning_rate=trial.params["lr"])
            callback = TransformersTrialCallback(trial, monitor="eval_loss")
            Trainer(model, args, train_dataset=train, eval_dataset=val,
                    callbacks=[callback]).train()

Needs the `transformers` package (`pip install tunewire[huggingface]`).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tunewire.integrations.objective import (
    ObjectiveTracker,
    StepReporter,
    TrackedCallback,
    TrialTarget,
    missing_monitor,
)

__all__ = ["StepReporter", "TransformersTrialCallback"]


class TransformersTrialCallback(TrackedCallback, TrainerCallback):
    """Reports the monitored evaluation metric to a tunewire trial after every evaluation
    (at the trainer's global step) and stops training when the server says so.

    With a client `Trial` the callback also finishes it: a NaN/inf value marks it
    infeasible and stops training; the end of `train` completes it with the best value
    (the server records it as stopped early if it said stop). The evaluation at the
    trainer's `max_steps` is marked as the run's last step, so a run that trains its full
    length is completed, never stopped there. With the reporter of a
    `tunewire train` task, return `callback.final_metrics` from the task: the worker
    completes the trial, and a NaN/inf value raises `TrialInfeasible`.

    Args:
        trial: a `tunewire.client.Trial` or a `tunewire.trainer.Reporter`.
        monitor: a key of the evaluation metrics (``eval_loss``, or ``eval_<name>`` for
            what `compute_metrics` returns), reported as the study's objective.

    Raises:
        MonitorMissing: at an evaluation without `monitor`.

    Evaluations need `eval_strategy` ``steps`` or ``epoch`` in the TrainingArguments. For
    one training process; evaluations after `train` returns are not reported.
    """

    def __init__(self, trial: TrialTarget, monitor: str = "eval_loss") -> None:
        self.tracker = ObjectiveTracker(trial, monitor)
        self._training = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        self._training = True

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not self._training:
            return
        metrics: dict[str, float] = kwargs.get("metrics") or {}
        if self.monitor not in metrics:
            raise missing_monitor(
                self.monitor,
                metrics,
                "evaluation metrics are named eval_<key of what compute_metrics returns>",
            )
        # The evaluation at the trainer's last step ends a full-length run.
        last_step = state.max_steps > 0 and state.global_step >= state.max_steps
        value = float(metrics[self.monitor])
        if self.tracker.observe(state.global_step, value, last_step=last_step):
            control.should_training_stop = True

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        self._training = False
        self.tracker.finish()
