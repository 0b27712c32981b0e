"""Exceptions a training task raises to tell the worker how a trial ended.

They decide what the server hears: an infeasible trial is a result the optimiser learns to
avoid, a bad parameter is a configuration mistake that stops the worker, anything else fails
the trial.
"""

from __future__ import annotations


class TrialInfeasible(Exception):
    """This configuration cannot be trained (out of memory, diverged loss...).

    The worker marks the trial INFEASIBLE with the message as reason and goes on with the
    next trial; the optimiser learns to avoid that region.
    """


class TaskParameterError(ValueError):
    """The trial's parameters do not fit the task (unknown name, value out of range).

    This is a mismatch between the search space and the task, so it would repeat on every
    trial: the worker fails the trial with this message and stops, instead of burning the
    study's budget.
    """


class TaskMetricError(ValueError):
    """A built-in task does not compute a study's metric (or the study optimises it in the
    direction where it gets worse): the worker refuses the study before taking a trial."""


class TaskContractError(Exception):
    """The task broke the interface (e.g. returned no objective metric): fails the trial."""


class TaskLoadError(ValueError):
    """The `--task` argument names no built-in task and no importable `module:function`."""


class WorkerInterrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM so that training stops at once.

    A BaseException, like KeyboardInterrupt, so that a user task's `except Exception`
    cannot swallow it: the worker must get the chance to hand the trial back.
    """
