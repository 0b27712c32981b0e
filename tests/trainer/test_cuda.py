"""The trainer on a real GPU: built-in networks with mixed precision, the worker's device
placement, and a real CUDA out-of-memory error. Skipped where CUDA is absent (every CI
machine); `scripts/gpu_check.sh` runs them on a lent GPU machine. The CUDA code paths are
also tested everywhere with a simulated device (test_cuda_paths.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer
from tunewire.trainer.tasks import BUILTIN_TASKS
from tunewire.trainer.worker import WorkerSettings, run_worker

from .test_worker import check_out_of_memory_study, make_study, settings, user_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_settings(server: RunningServer, study: str, task: str, **kw: Any) -> WorkerSettings:
    return settings(server, study, task, device="cuda:0", **kw)


def test_the_worker_places_its_trials_on_the_gpu_with_mixed_precision(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "gpu-probe", trials=2)
    summary = run_worker(gpu_settings(sqlite_server, "gpu-probe", user_task("gpu_probe"), amp=True))
    assert summary.exit_code == 0, summary.message
    for trial in client.list_trials("gpu-probe"):
        metrics = trial.final_metrics or {}
        assert trial.state == "completed"
        assert metrics["device_index"] == 0 and metrics["current_device"] == 0
        assert metrics["use_amp"] == 1.0


@pytest.mark.parametrize("task", ["digits-mlp", "mnist-cnn"])
def test_builtin_networks_train_on_the_gpu(
    sqlite_server: RunningServer, client: TuningClient, task: str
) -> None:
    spec = BUILTIN_TASKS[task].default_spec()
    spec.update(algorithm="sobol", max_trials=2, early_stopping={"rule": "none"})
    client.create_study(f"gpu-{task}", spec)
    summary = run_worker(gpu_settings(sqlite_server, f"gpu-{task}", task, amp=True))
    assert summary.exit_code == 0, summary.message
    trials = client.list_trials(f"gpu-{task}")
    assert [t.state for t in trials] == ["completed", "completed"]
    best = max((t.final_metrics or {}).get("test_accuracy", 0.0) for t in trials)
    assert best > 0.5, [t.final_metrics for t in trials]


def test_a_real_out_of_memory_error_marks_the_trial_infeasible(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    check_out_of_memory_study(
        client, gpu_settings(sqlite_server, "gpu-oom", user_task("allocates_too_much"))
    )
    # The failed allocation left nothing behind on the device.
    assert torch.cuda.memory_allocated(0) < 1 << 30
