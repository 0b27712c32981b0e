"""User tasks used by the tests, loaded by the worker as 'path/to/user_tasks.py:function'
exactly as a user's own code would be."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tunewire.trainer import Reporter

SPACE: dict[str, Any] = {
    "parameters": [{"name": "x", "type": "float", "min": -2.0, "max": 2.0}],
    "metrics": [{"name": "loss", "goal": "minimize"}],
    "algorithm": "random",
    "seed": 3,
}


def quadratic(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """A learning curve that converges to (x - 1)^2."""
    best = float("inf")
    for step in range(1, 6):
        loss = (params["x"] - 1.0) ** 2 + 1.0 / step
        best = min(best, loss)
        if reporter.report(step, {"loss": loss}):
            break
    return {"loss": best, "device_is_cpu": float(reporter.device.type == "cpu")}


def out_of_memory(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """What PyTorch raises when a batch does not fit on the GPU."""
    if params["x"] > 0:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return quadratic(params, reporter)


def diverges(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """The loss becomes NaN at step 2; reporter.report raises TrialInfeasible."""
    reporter.report(1, {"loss": 1.0})
    reporter.report(2, {"loss": float("nan")})
    return {"loss": 0.0}


def raises(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    raise RuntimeError("a bug in the user's training code")


def forgets_objective(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    return {"accuracy": 0.5}


def slow(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """Twenty steps of 0.25 s; writes a marker with the worker's pid when it starts, so a
    test knows which process to kill."""
    marker_dir = os.environ.get("TUNEWIRE_TEST_MARKERS")
    if marker_dir:
        Path(marker_dir, f"{os.getpid()}-{reporter.trial_id}").touch()
    best = float("inf")
    for step in range(1, 21):
        time.sleep(0.25)
        best = min(best, (params["x"] - 1.0) ** 2 + 1.0 / step)
        if reporter.report(step, {"loss": best}):
            break
    return {"loss": best, "pid": float(os.getpid())}
