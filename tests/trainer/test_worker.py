"""The worker against a real server (SQLite) with user tasks: outcomes of every path."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer, run_in_background
from tunewire.trainer.cli import format_summary
from tunewire.trainer.cli import main as train_main
from tunewire.trainer.worker import (
    EXIT_CONFIG,
    EXIT_FAILURES,
    EXIT_UNREACHABLE,
    WorkerSettings,
    run_worker,
)

from .user_tasks import SPACE

TASKS = Path(__file__).with_name("user_tasks.py")


def settings(server: RunningServer, study: str, task: str, **kw: Any) -> WorkerSettings:
    base: dict[str, Any] = dict(
        server=server.target,
        study=study,
        task=task,
        device="cpu",
        progress="off",
        server_wait_s=5.0,
    )
    base.update(kw)
    return WorkerSettings(**base)


def user_task(name: str) -> str:
    return f"{TASKS}:{name}"


def make_study(client: TuningClient, name: str, trials: int = 3, **extra: Any) -> None:
    client.create_study(name, {**SPACE, "max_trials": trials, **extra})


def test_a_user_task_runs_through_the_interface(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "user")
    summary = run_worker(settings(sqlite_server, "user", user_task("quadratic")))
    assert summary.exit_code == 0, summary.message
    assert summary.counts() == {"completed": 3}
    trials = client.list_trials("user")
    assert all(t.state == "completed" for t in trials)
    for t in trials:
        assert [step for step, _ in t.measurements] == [1, 2, 3, 4, 5]
        assert t.final_metrics is not None and t.final_metrics["device_is_cpu"] == 1.0
        assert t.final_metrics["loss"] == pytest.approx((t.params["x"] - 1) ** 2 + 0.2)
    assert summary.best() is not None


def test_the_best_trial_follows_the_studys_goal(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "most", metrics=[{"name": "loss", "goal": "maximize"}])
    summary = run_worker(settings(sqlite_server, "most", user_task("quadratic")))
    assert summary.maximize and len(summary.outcomes) == 3
    best = summary.best()
    assert best is not None and best.metrics is not None
    assert best.metrics["loss"] == max(o.metrics["loss"] for o in summary.outcomes if o.metrics)


def test_out_of_memory_marks_the_trial_infeasible_and_the_worker_goes_on(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    check_out_of_memory_study(client, settings(sqlite_server, "oom", user_task("out_of_memory")))


def check_out_of_memory_study(client: TuningClient, worker: WorkerSettings) -> None:
    """Runs the worker on a fresh 6-trial study whose task runs out of memory for x > 0:
    those trials end infeasible with the reason, the others complete."""
    make_study(client, worker.study, trials=6)
    summary = run_worker(worker)
    assert summary.exit_code == 0, summary.message
    trials = client.list_trials(worker.study)
    assert len(trials) == 6
    oom = [t for t in trials if t.params["x"] > 0]
    ok = [t for t in trials if t.params["x"] <= 0]
    assert oom and ok, "the seed should give both signs of x"
    assert all(t.state == "infeasible" and "CUDA out of memory" in t.reason for t in oom)
    assert all(t.state == "completed" for t in ok)


def test_a_nan_loss_marks_the_trial_infeasible(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "nan", trials=2)
    summary = run_worker(settings(sqlite_server, "nan", user_task("diverges")))
    assert summary.exit_code == 0
    for t in client.list_trials("nan"):
        assert t.state == "infeasible"
        assert "loss became nan at step 2" in t.reason


def test_a_diverging_builtin_network_is_infeasible(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    """A real divergence: plain SGD with a huge learning rate on the diabetes regression."""
    client.create_study(
        "diverge",
        {
            "parameters": [
                {"name": "lr", "type": "float", "min": 5.0, "max": 10.0},
                {"name": "optimizer", "type": "categorical", "values": ["sgd"]},
                {"name": "momentum", "type": "float", "min": 0.9, "max": 0.99},
                {"name": "hidden_layers", "type": "int", "min": 2, "max": 3},
            ],
            "metrics": [{"name": "val_loss", "goal": "minimize"}],
            "algorithm": "random",
            "max_trials": 2,
        },
    )
    summary = run_worker(settings(sqlite_server, "diverge", "diabetes-mlp"))
    assert summary.exit_code == 0, summary.message
    for t in client.list_trials("diverge"):
        assert t.state == "infeasible", t
        assert "training diverged" in t.reason


def test_a_task_that_keeps_raising_stops_the_worker(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "bug", trials=10)
    summary = run_worker(settings(sqlite_server, "bug", user_task("raises")))
    assert summary.exit_code == EXIT_FAILURES
    assert "3 trials in a row failed" in summary.message
    failed = client.list_trials("bug", ["failed"])
    assert len(failed) == 3
    assert "RuntimeError: a bug in the user's training code" in failed[0].reason


def test_a_task_returning_no_objective_fails_its_trial(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "contract", trials=1)
    summary = run_worker(settings(sqlite_server, "contract", user_task("forgets_objective")))
    assert summary.counts() == {"failed": 1}
    (trial,) = client.list_trials("contract")
    assert "the task returned no 'loss'" in trial.reason


def test_parameter_ranges_the_task_cannot_train_stop_the_worker_before_training(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    client.create_study(
        "bad-values",
        {
            "parameters": [{"name": "hidden_layers", "type": "int", "min": 7, "max": 9}],
            "metrics": [{"name": "val_loss", "goal": "minimize"}],
            "algorithm": "random",
            "max_trials": 5,
        },
    )
    summary = run_worker(settings(sqlite_server, "bad-values", "digits-mlp"))
    assert summary.exit_code == EXIT_CONFIG
    assert "parameter 'hidden_layers' must be in [0, 6], got 7" in summary.message
    assert client.list_trials("bad-values") == [], "refused before any trial started"


def digits_study(client: TuningClient, name: str, metric: str, goal: str, trials: int) -> None:
    client.create_study(
        name,
        {
            "parameters": [
                {"name": "lr", "type": "float", "min": 1e-3, "max": 0.1, "scale": "log"},
                {"name": "hidden_layers", "type": "int", "min": 0, "max": 1},
                {"name": "max_epochs", "type": "int", "min": 3, "max": 4},
            ],
            "metrics": [{"name": metric, "goal": goal}],
            "algorithm": "random",
            "seed": 3,
            "max_trials": trials,
        },
    )


def test_a_builtin_task_optimises_the_accuracy_a_study_maximises(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    """digits-mlp on a study maximising `accuracy`: every report carries the validation
    accuracy under that name, each trial keeps its most accurate epoch, and the worker's
    best trial is the most accurate."""
    digits_study(client, "accurate", "accuracy", "maximize", trials=3)
    summary = run_worker(settings(sqlite_server, "accurate", "digits-mlp"))
    assert summary.exit_code == 0, summary.message
    assert summary.counts() == {"completed": 3}
    records = client.list_trials("accurate")
    for record in records:
        reports = [metrics for _, metrics in record.measurements]
        assert all(m["accuracy"] == m["val_accuracy"] and 0 < m["accuracy"] <= 1 for m in reports)
        most_accurate = max(reports, key=lambda m: m["accuracy"])
        final = record.final_metrics or {}
        assert final["accuracy"] == final["val_accuracy"] == most_accurate["accuracy"]
        assert final["val_loss"] == most_accurate["val_loss"], "the kept epoch's loss"
    best = summary.best()
    assert best is not None and best.metrics is not None
    assert best.metrics["accuracy"] == max((r.final_metrics or {})["accuracy"] for r in records)


@pytest.mark.parametrize(
    ("metric", "goal", "needle"),
    [
        ("f1", "maximize", "cannot optimise the study's objective 'f1'"),
        ("accuracy", "minimize", "cannot minimize the study's objective 'accuracy'"),
        ("val_loss", "maximize", "cannot maximize the study's objective 'val_loss'"),
    ],
)
def test_a_builtin_task_refuses_an_objective_it_does_not_compute_before_any_trial(
    sqlite_server: RunningServer,
    client: TuningClient,
    capsys: pytest.CaptureFixture[str],
    metric: str,
    goal: str,
    needle: str,
) -> None:
    digits_study(client, "foreign", metric, goal, trials=3)
    flags = ["--server", sqlite_server.target, "--devices", "cpu", "--progress", "off"]
    code = train_main(["--study", "foreign", "--task", "digits-mlp", *flags])
    assert code == EXIT_CONFIG
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("tunewire train: worker ") and needle in line
    assert "it reports val_loss (minimize), val_accuracy or accuracy (maximize)" in line
    assert client.list_trials("foreign") == [], "refused before any trial was taken"


def test_a_metric_the_study_does_not_have_fails_the_trial_before_the_worker_exits(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    """The task reports val_loss to a study whose objective is loss: the server refuses
    the report, and the trial must not stay active for the whole lease."""
    make_study(client, "wrong-metric", trials=3)
    summary = run_worker(settings(sqlite_server, "wrong-metric", user_task("reports_val_loss")))
    assert summary.exit_code == EXIT_CONFIG
    assert "none of the study's metrics ['loss']" in summary.message
    (trial,) = client.list_trials("wrong-metric")
    assert trial.state == "failed" and "the server refused" in trial.reason
    assert summary.counts() == {"failed": 1}, "the summary counts the trial it failed"
    assert format_summary([summary]).startswith(f"worker {summary.worker_id} (cpu): 1 failed in ")


def test_a_worker_says_why_a_study_has_no_trials(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    make_study(client, "paused", trials=3)
    client.stop_study("paused")
    summary = run_worker(settings(sqlite_server, "paused", user_task("quadratic")))
    assert summary.exit_code == 0 and summary.outcomes == []
    assert "study 'paused' is stopped (resume it with `tunewire study resume paused`)" in (
        summary.message
    )
    make_study(client, "spent", trials=1)
    summary = run_worker(settings(sqlite_server, "spent", user_task("quadratic"), max_trials=5))
    assert summary.counts() == {"completed": 1}
    assert summary.message == "study 'spent' is completed: its trial budget (1) is spent"


def test_a_space_with_unknown_names_is_refused_before_training(
    sqlite_server: RunningServer, client: TuningClient, tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "parameters:\n  - {name: learning_rate, type: float, min: 0.001, max: 0.1}\n"
        "metrics:\n  - {name: val_loss, goal: minimize}\n"
    )
    summary = run_worker(settings(sqlite_server, "typo", "digits-mlp", space=str(space)))
    assert summary.exit_code == EXIT_CONFIG
    assert "'learning_rate' (did you mean 'lr'?)" in summary.message
    assert [s.name for s in client.list_studies()] == []


def test_a_space_file_the_client_refuses_is_a_one_line_configuration_error(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "parameters:\n  - {name: x, type: float, min: 0, max: 1}\n"
        "metrics:\n  - {name: loss, goal: minimize}\nalgoritm: random\n"
    )
    worker = settings(sqlite_server, "misspelt", user_task("quadratic"), space=str(space))
    summary = run_worker(worker)
    assert summary.exit_code == EXIT_CONFIG
    assert summary.message.startswith(f"--space {space}: ") and "'algoritm'" in summary.message
    space.write_text("parameters: [\n  - {name: x\n")
    summary = run_worker(worker)
    assert summary.exit_code == EXIT_CONFIG
    assert summary.message == (
        f"--space {space}: not valid YAML: line 2, column 3: expected the node content, "
        "but found '-'"
    )


def test_the_worker_creates_the_study_from_the_task_default(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    summary = run_worker(settings(sqlite_server, "made", "digits-mlp", max_trials=1))
    assert summary.exit_code == 0, summary.message
    study = client.get_study("made")
    assert "units_6" in [p.name for p in study.spec.parameters]
    (trial,) = client.list_trials("made")
    assert trial.state in ("completed", "stopped_early")
    metrics = trial.final_metrics or {}
    for name in ("val_loss", "test_accuracy", "epochs_trained", "train_seconds", "n_params"):
        assert name in metrics


def test_same_parameters_and_seed_give_the_same_losses(
    sqlite_server: RunningServer, client: TuningClient
) -> None:
    client.create_study(
        "repro",
        {
            "parameters": [
                {"name": "hidden_layers", "type": "int", "min": 1, "max": 2},
                {"name": "dropout", "type": "float", "min": 0.0, "max": 0.5},
                {"name": "max_epochs", "type": "int", "min": 3, "max": 4},
            ],
            "metrics": [{"name": "val_loss", "goal": "minimize"}],
            "algorithm": "random",
            "max_trials": 2,
        },
    )
    params = {"hidden_layers": 2, "dropout": 0.3, "max_epochs": 4}
    client.add_trial("repro", params)
    client.add_trial("repro", params)
    summary = run_worker(settings(sqlite_server, "repro", "digits-mlp", seed=7))
    assert summary.counts() == {"completed": 2}
    first, second = client.list_trials("repro")
    assert first.params == second.params == params
    assert first.measurements == second.measurements
    assert len(first.measurements) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_ends_the_worker_with_a_message() -> None:
    port = _free_port()
    s = WorkerSettings(
        server=f"127.0.0.1:{port}",
        study="x",
        task=user_task("quadratic"),
        device="cpu",
        progress="off",
        server_wait_s=1.0,
        rpc_timeout_s=0.5,
    )
    summary = run_worker(s)
    assert summary.exit_code == EXIT_UNREACHABLE
    assert f"127.0.0.1:{port} unreachable" in summary.message


def test_a_server_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    port = _free_port()
    started: list[RunningServer] = []

    url = f"sqlite:///{tmp_path / 'late.db'}"
    first = run_in_background(url)  # the study exists before the worker's server comes up
    with TuningClient(first.target) as c:
        c.create_study("late", {**SPACE, "max_trials": 2})
    first.stop(0)

    def start_later() -> None:
        time.sleep(2.0)
        started.append(run_in_background(url, port=port))

    thread = threading.Thread(target=start_later)
    thread.start()
    s = WorkerSettings(
        server=f"127.0.0.1:{port}",
        study="late",
        task=user_task("quadratic"),
        device="cpu",
        progress="off",
        server_wait_s=60.0,
        create_study=False,
    )
    try:
        summary = run_worker(s)
    finally:
        thread.join()
        for srv in started:
            srv.stop(0)
    assert summary.exit_code == 0, summary.message
    assert summary.counts() == {"completed": 2}
