"""The tunewire trainer worker: trains PyTorch networks from suggested hyperparameters.

A user task is a function ``train(params, reporter) -> metrics``; it may raise
``TrialInfeasible`` for a configuration that cannot be trained.
"""

from tunewire.trainer.errors import TaskParameterError, TrialInfeasible
from tunewire.trainer.reporter import Reporter, TrainFunction

__all__ = ["Reporter", "TaskParameterError", "TrainFunction", "TrialInfeasible"]
