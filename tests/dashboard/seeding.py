"""Studies with everything the dashboard shows, made through the client as workers would:
simulated trainers whose learning curves depend on the parameters, ASHA stop decisions, a
failed, an infeasible, a released and a lost trial (and its retry), a multi-objective
study, and user strings that are markup (the XSS probe) wherever the API allows any text."""

from __future__ import annotations

import math
import threading
import time

from tunewire.client import TuningClient

PROBE = "<img src=x onerror=alert(1)>"
EPOCHS = 12
LEASE_SECONDS = 2.0
SINGLE = {
    "parameters": [
        {"name": "lr", "type": "float", "min": 1e-4, "max": 0.3, "scale": "log"},
        {"name": "layers", "type": "int", "min": 1, "max": 4},
        {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", PROBE]},
        {"name": "batch", "type": "discrete", "values": [32, 64, 128]},
        {
            "name": "dropout",
            "type": "float",
            "min": 0.0,
            "max": 0.5,
            "condition": {"parent": "layers", "min": 2},
        },
    ],
    "metrics": [{"name": "val_loss", "goal": "minimize"}],
    "algorithm": "random",
    "seed": 7,
    "lease_timeout_seconds": LEASE_SECONDS,
    "max_trial_retries": 1,
    "early_stopping": {
        "rule": "successive_halving",
        "min_resource": 2,
        "reduction_factor": 2,
        "max_step": EPOCHS - 1,
    },
}
MULTI = {
    "parameters": [
        {"name": "width", "type": "int", "min": 16, "max": 512, "scale": "log"},
        {"name": "depth", "type": "int", "min": 1, "max": 8},
    ],
    "metrics": [
        {"name": "val_loss", "goal": "minimize"},
        {"name": "latency_ms", "goal": "minimize"},
    ],
    "algorithm": "random",
    "seed": 3,
}


def loss(params: dict, step: int) -> float:
    """A learning curve whose plateau the parameters set (lr near 0.01 is best)."""
    plateau = 0.2 + 0.15 * abs(math.log10(params["lr"]) + 2) + 0.03 * params["layers"]
    if params["optimizer"] == "sgd":
        plateau += 0.1
    return plateau + 1.5 * math.exp(-0.45 * step)


def work(target: str, study: str, worker: str, trials: int) -> None:
    """One simulated trainer: runs `trials` trials, obeying the server's stop decisions."""
    client = TuningClient(target, retry_timeout=10)
    try:
        for trial in client.worker_loop(study, worker, max_trials=trials, poll_interval=0.05):
            with trial:
                for step in range(EPOCHS):
                    if trial.report(
                        step, {"val_loss": loss(trial.params, step)}, elapsed_seconds=step * 0.5
                    ):
                        break
                trial.complete()
    finally:
        client.close()


def seed(target: str, workers: tuple[str, ...] = ("gpu-0", "gpu-1", PROBE)) -> None:
    """Study "mlp" (one metric, ASHA, every kind of ending) and "pareto" (two metrics)."""
    client = TuningClient(target, retry_timeout=10)
    try:
        client.create_study("mlp", SINGLE)
        threads = [threading.Thread(target=work, args=(target, "mlp", w, 6)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # Endings the trainers above never reach: failed, infeasible, released, lost.
        (failed,) = client.suggest("mlp", "gpu-2")
        failed.report(0, {"val_loss": 2.0})
        failed.fail(f"RuntimeError: CUDA error {PROBE}")
        (oom,) = client.suggest("mlp", "gpu-2")
        oom.infeasible(f"out of memory <script>alert(4)</script> {PROBE}")
        (released,) = client.suggest("mlp", "gpu-3")
        released.report(0, {"val_loss": 1.9})
        released.release()
        (again,) = client.suggest("mlp", "gpu-2")  # the released trial, started afresh
        for step in range(3):
            again.report(step, {"val_loss": loss(again.params, step)})
        again.complete()
        (abandoned,) = client.suggest("mlp", "gpu-lost")
        abandoned.report(0, {"val_loss": 1.8})
        time.sleep(LEASE_SECONDS + 0.5)  # its lease runs out: LOST, and retried
        client.get_study("mlp")
        client.create_study("pareto", MULTI)
        for i in range(14):
            (trial,) = client.suggest("pareto", "gpu-0")
            w, d = trial.params["width"], trial.params["depth"]
            trial.report(0, {"val_loss": 1.0})
            quality = 1.0 / math.log(w * d + 2) + 0.04 * (i % 4)
            trial.complete({"val_loss": quality, "latency_ms": 0.05 * w * d + i % 3})
    finally:
        client.close()
