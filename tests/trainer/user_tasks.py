"""User tasks used by the tests, loaded by the worker as 'path/to/user_tasks.py:function'
exactly as a user's own code would be."""

from __future__ import annotations

import os
import time
import weakref
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


# Weak references to the batches `out_of_memory_mid_epoch` held when it ran out of memory:
# a test checks that they are gone when the worker empties the CUDA cache.
OOM_BATCHES: list[weakref.ref[torch.Tensor]] = []


def out_of_memory_mid_epoch(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """One epoch trains; in the second, a batch does not fit (for x > 0) while the task still
    holds tensors, as a real training step would."""
    loss = (params["x"] - 1.0) ** 2
    reporter.report(1, {"loss": loss + 1.0})
    batch = torch.zeros(64, 64)
    if params["x"] > 0:
        OOM_BATCHES.append(weakref.ref(batch))
        raise torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "15.77 GiB of which 1.02 GiB is free.\nSee PYTORCH_CUDA_ALLOC_CONF"
        )
    reporter.report(2, {"loss": loss + 0.5})
    return {"loss": loss + 0.5}


def gpu_probe(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """Reports where the worker runs it: the reporter's device, the CUDA device current in
    this process, whether mixed precision applies, and the process id."""
    cuda = reporter.device.type == "cuda"
    return {
        **quadratic(params, reporter),
        "device_index": float(reporter.device.index if cuda else -1),
        "current_device": float(torch.cuda.current_device() if cuda else -1),
        "use_amp": float(reporter.use_amp),
        "pid": float(os.getpid()),
    }


def diverges(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """The loss becomes NaN at step 2; reporter.report raises TrialInfeasible."""
    reporter.report(1, {"loss": 1.0})
    reporter.report(2, {"loss": float("nan")})
    return {"loss": 0.0}


def raises(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    raise RuntimeError("a bug in the user's training code")


def reports_val_loss(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """Reports a metric by a fixed name, whatever the study's objective is."""
    reporter.report(1, {"val_loss": 0.5})
    return {"val_loss": 0.5}


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


def allocates_too_much(params: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
    """On a GPU, for x > 0, asks for a tensor no GPU holds (128 TiB): a real CUDA
    out-of-memory error, not a simulated one."""
    if params["x"] > 0 and reporter.device.type == "cuda":
        torch.empty(1 << 45, device=reporter.device)
    return quadratic(params, reporter)
