"""Trainer processes (`python -m tunewire.trainer`, i.e. `tunewire train`) against a real
server: tuning digits with two workers, signals, a killed worker's trial taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer
from tunewire.trainer.tasks import BUILTIN_TASKS

from .user_tasks import SPACE

TASKS = Path(__file__).with_name("user_tasks.py")


def trainer(
    server: RunningServer, study: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A trainer process as a user starts it, with its output captured."""
    cmd = [
        sys.executable,
        "-m",
        "tunewire.trainer",
        "--server",
        server.target,
        "--study",
        study,
        "--progress",
        "log",
        *args,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_trainers_tune_digits_to_95_percent_in_20_trials(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    spec = BUILTIN_TASKS["digits-mlp"].default_spec()  # GP, median stopping
    spec["max_trials"] = 20
    client.create_study("digits", spec)
    workers = [trainer(sqlite_server, "digits", "--no-create-study") for _ in range(2)]
    outputs = [w.communicate(timeout=540)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = client.list_trials("digits", measurements=False)
    assert len(trials) == 20
    assert len({t.worker_id for t in trials if t.state == "completed"}) == 2
    # The study reaches 95% test accuracy within its 20 trials. (The trial with the best
    # validation loss on the 360-sample validation split can sit a point or two lower.)
    finished = [t for t in trials if t.final_metrics and "test_accuracy" in t.final_metrics]
    top = max(finished, key=lambda t: t.final_metrics["test_accuracy"])  # type: ignore[index]
    assert top.final_metrics["test_accuracy"] >= 0.95, top  # type: ignore[index]
    (best,) = client.best_trials("digits")
    assert best.final_metrics is not None and best.final_metrics["test_accuracy"] >= 0.9
    for out in outputs:
        assert "best trial of these workers" in out


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_trainers_trial_is_finished_by_the_other(
    sqlite_server: RunningServer, client: TuningClient, tmp_path: Path, how: str
) -> None:
    """SIGTERM: the trial is handed back at once. SIGKILL: its lease expires and the
    server offers it again. Either way the other trainer finishes it."""
    client.create_study("takeover", {**SPACE, "max_trials": 2, "lease_timeout_seconds": 3})
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"TUNEWIRE_TEST_MARKERS": str(markers)}
    task = f"{TASKS}:slow"
    first = trainer(sqlite_server, "takeover", "--task", task, "--no-create-study", env=env)
    wait_for(lambda: any(markers.iterdir()), 60, "the first trainer to start a trial")
    (marker,) = list(markers.iterdir())
    trial_id = int(marker.name.split("-")[1])
    second = trainer(sqlite_server, "takeover", "--task", task, "--no-create-study", env=env)
    time.sleep(0.5)
    first.send_signal(getattr(signal, how))
    first_out = first.communicate(timeout=60)[0]
    second_out = second.communicate(timeout=120)[0]
    assert second.returncode == 0, second_out
    trials = {t.id: t for t in client.list_trials("takeover")}
    if how == "SIGTERM":
        assert first.returncode == 0, first_out
        assert f"handing trial {trial_id} back" in first_out
        assert "Traceback" not in first_out
        taken = trials[trial_id]
    else:
        assert trials[trial_id].state == "lost"
        (taken,) = [t for t in trials.values() if t.retry_of == trial_id]
    assert taken.state == "completed"
    assert taken.final_metrics is not None
    assert taken.final_metrics["pid"] == second.pid
    done = [t for t in trials.values() if t.state == "completed"]
    assert len(done) == 2


def test_bad_task_and_device_give_clear_errors(sqlite_server: RunningServer) -> None:
    proc = trainer(sqlite_server, "s", "--task", "no_such_module:train")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2
    assert "cannot import 'no_such_module'" in out and "Traceback" not in out
    proc = trainer(sqlite_server, "s", "--task", "digits")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "digits-mlp" in out
    proc = trainer(sqlite_server, "s", "--devices", "cuda:7")
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "cuda:7" in out and "Traceback" not in out


def test_devices_list_starts_one_worker_process_each(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    client.create_study("pair", {**SPACE, "max_trials": 6})
    proc = trainer(
        sqlite_server,
        "pair",
        "--task",
        f"{TASKS}:quadratic",
        "--devices",
        "cpu*2",
        "--no-create-study",
    )
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, out
    trials = client.list_trials("pair", measurements=False)
    assert len(trials) == 6 and all(t.state == "completed" for t in trials)
    assert out.count("worker ") >= 2 and "best trial of these workers" in out
    assert "[cpu#0]" in out and "[cpu#1]" in out
