"""The metrics a built-in task reports, and which of them a study may optimise: a study's
objective must be a validation measure the task computes, in the direction that measure
improves, else the worker refuses the study before taking a trial."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunewire.trainer.errors import TaskMetricError


@dataclass(frozen=True)
class Objective:
    """A validation measure a task can optimise.

    Attributes:
        measure: the name the task computes it under (``val_loss``, ``val_accuracy``...).
        maximize: whether larger is better.
    """

    measure: str
    maximize: bool


# What a study may name its objective -> the measure it is. `accuracy` and `rmse` are the
# names a study is likely to use for the validation accuracy and RMSE.
CLASSIFICATION_OBJECTIVES = {
    "val_loss": Objective("val_loss", maximize=False),
    "val_accuracy": Objective("val_accuracy", maximize=True),
    "accuracy": Objective("val_accuracy", maximize=True),
}
REGRESSION_OBJECTIVES = {
    "val_loss": Objective("val_loss", maximize=False),
    "val_rmse": Objective("val_rmse", maximize=False),
    "rmse": Objective("val_rmse", maximize=False),
}
# The final metrics of every built-in task besides the validation measures.
COMMON_FINAL_METRICS = (
    "test_loss",
    "epochs_trained",
    "best_epoch",
    "pretrain_epochs_run",
    "train_seconds",
    "n_params",
)


def task_objectives(classification: bool) -> dict[str, Objective]:
    """The objectives a classification (or regression) task can optimise, by name."""
    return CLASSIFICATION_OBJECTIVES if classification else REGRESSION_OBJECTIVES


def final_metric_names(classification: bool) -> tuple[str, ...]:
    """Every metric a task's completed trial carries, whatever its objective."""
    scores = ("val_accuracy", "test_accuracy") if classification else ("val_rmse", "test_rmse")
    return ("val_loss", *scores, *COMMON_FINAL_METRICS)


def objective_of(name: str, *, classification: bool, trainer: str) -> Objective:
    """The measure a study's objective `name` is, for what `trainer` names (e.g. "task
    'digits-mlp'").

    Raises:
        TaskMetricError: the task computes no such measure.
    """
    known = task_objectives(classification)
    if name not in known:
        raise TaskMetricError(
            f"{trainer} cannot optimise the study's objective {name!r}: {_choices(classification)}"
        )
    return known[name]


def check_metrics(metrics: Sequence[tuple[str, bool]], *, task: str, classification: bool) -> None:
    """Checks, before any trial, that a task reports what a study measures.

    Args:
        metrics: (name, maximize) of each of the study's metrics, its objective first.
        task: the task name, for error messages.
        classification: whether the task classifies (else it regresses).

    Raises:
        TaskMetricError: the objective is no validation measure of the task, or is
            optimised in the direction where it gets worse; or another metric of the
            study is none of the task's final metrics.

    Example: a study maximising ``accuracy`` fits ``digits-mlp`` (its validation
    accuracy); one maximising ``val_loss`` or naming ``f1`` does not.
    """
    (name, maximize), *others = metrics
    objective = objective_of(name, classification=classification, trainer=f"task {task!r}")
    if maximize != objective.maximize:
        better = "larger" if objective.maximize else "smaller"
        raise TaskMetricError(
            f"task {task!r} cannot {_goal(maximize)} the study's objective {name!r}, which is "
            f"better {better}: give it goal {_goal(objective.maximize)} "
            f"({_choices(classification)})"
        )
    finals = (*final_metric_names(classification), name)
    missing = [other for other, _ in others if other not in finals]
    if missing:
        raise TaskMetricError(
            f"task {task!r} does not report the study's metric(s) {', '.join(map(repr, missing))}: "
            f"its trials end with {', '.join(dict.fromkeys(finals))}"
        )


def _goal(maximize: bool) -> str:
    return "maximize" if maximize else "minimize"


def _choices(classification: bool) -> str:
    """What the task reports after every epoch, as objectives with their goals."""
    by_measure: dict[Objective, list[str]] = {}
    for name, objective in task_objectives(classification).items():
        by_measure.setdefault(objective, []).append(name)
    listed = ", ".join(
        f"{' or '.join(names)} ({_goal(objective.maximize)})"
        for objective, names in by_measure.items()
    )
    return f"it reports {listed} after every epoch"
