"""The Hugging Face Transformers callback against a real server: a tiny BERT built from a
config (no download) trains with `transformers.Trainer` from `worker_loop`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from tests.integrations.transformers_tasks import fit  # noqa: E402
from tunewire.client import TuningClient  # noqa: E402
from tunewire.integrations.transformers import TransformersTrialCallback  # noqa: E402
from tunewire.server.app import RunningServer  # noqa: E402
from tunewire.trainer.cli import main as train_main  # noqa: E402

TASKS = Path(__file__).with_name("transformers_tasks.py")


def bert_study(client: TuningClient, name: str, **extra: Any) -> None:
    client.create_study(
        name,
        {
            "parameters": [
                {"name": "lr", "type": "float", "min": 1e-3, "max": 1e-2, "scale": "log"}
            ],
            "metrics": [{"name": "eval_loss", "goal": "minimize"}],
            "algorithm": "random",
            "seed": 2,
            "max_trials": 1,
            **extra,
        },
    )


def test_worker_loop_reports_evaluation_steps_and_completes_with_the_best_value(
    client: TuningClient, tmp_path: Path
) -> None:
    bert_study(client, "full")
    for trial in client.worker_loop("full", "w"):
        with trial, trial.heartbeat():
            trainer = fit(trial.params, TransformersTrialCallback(trial), tmp_path)
        assert trainer.state.global_step == 12
    (record,) = client.list_trials("full")
    assert record.state == "completed"
    assert [step for step, _ in record.measurements] == [4, 8, 12]
    best = min(m["eval_loss"] for _, m in record.measurements)
    assert record.final_metrics == {"eval_loss": pytest.approx(best)}


def test_worker_loop_obeys_the_servers_stop(client: TuningClient, tmp_path: Path) -> None:
    # The loss of two classes stays far above the bound: a stop at the second evaluation.
    stop = {"early_stopping": {"rule": "threshold", "bound": 1e-6, "after_step": 8}}
    bert_study(client, "stopped", **stop)
    for trial in client.worker_loop("stopped", "w"):
        with trial, trial.heartbeat():
            trainer = fit(trial.params, TransformersTrialCallback(trial), tmp_path, max_steps=40)
        assert trainer.state.global_step == 8, "training ended at the step the server stopped"
    (record,) = client.list_trials("stopped")
    assert record.state == "stopped_early" and record.stopped_at_step == 8
    assert [step for step, _ in record.measurements] == [4, 8]


def test_a_full_length_run_is_completed_under_a_rule_that_would_stop_its_last_step(
    sqlite_server: RunningServer, client: TuningClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewire train --task transformers_tasks.py:train` (max_steps 12, an evaluation
    every 4 steps) under a rule that would stop the evaluation at step 12: the callback
    marks it as the last step, so the trial ends completed, not stopped early."""
    bert_study(
        client, "full-length", early_stopping={"rule": "threshold", "bound": 1e-6, "after_step": 12}
    )
    flags = ["--server", sqlite_server.target, "--devices", "cpu", "--progress", "off"]
    code = train_main(["--study", "full-length", "--task", f"{TASKS}:train", *flags])
    assert code == 0, capsys.readouterr()
    (record,) = client.list_trials("full-length")
    assert record.state == "completed" and record.stopped_at_step is None
    assert [step for step, _ in record.measurements] == [4, 8, 12]


def test_a_nan_metric_marks_the_trial_infeasible(client: TuningClient, tmp_path: Path) -> None:
    """`compute_metrics` gives NaN from the second evaluation on (a metric of a diverged
    model): the trial ends infeasible and training stops there."""
    client.create_study(
        "nan",
        {
            "parameters": [{"name": "lr", "type": "float", "min": 1e-3, "max": 1e-2}],
            "metrics": [{"name": "score", "goal": "maximize"}],
            "algorithm": "random",
            "max_trials": 1,
        },
    )
    evaluations: list[int] = []

    def score(prediction: Any) -> dict[str, float]:
        evaluations.append(1)
        return {"score": 0.5 if len(evaluations) < 2 else math.nan}

    for trial in client.worker_loop("nan", "w"):
        callback = TransformersTrialCallback(trial, monitor="eval_score")
        with trial, trial.heartbeat():
            trainer = fit(trial.params, callback, tmp_path, compute_metrics=score)
        assert trainer.state.global_step == 8
        assert callback.tracker.maximize, "the goal comes from the study"
    (record,) = client.list_trials("nan")
    assert record.state == "infeasible" and "eval_score became nan at step 8" in record.reason


def test_tunewire_train_runs_a_transformers_task(
    sqlite_server: RunningServer, client: TuningClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewire train --task transformers_tasks.py:train`: the reporter path."""
    bert_study(client, "cli")
    flags = ["--server", sqlite_server.target, "--devices", "cpu", "--progress", "off"]
    code = train_main(["--study", "cli", "--task", f"{TASKS}:train", *flags])
    assert code == 0, capsys.readouterr()
    (record,) = client.list_trials("cli")
    assert record.state == "completed"
    assert [step for step, _ in record.measurements] == [4, 8, 12]
    best = min(m["eval_loss"] for _, m in record.measurements)
    assert record.final_metrics is not None
    assert record.final_metrics["eval_loss"] == pytest.approx(best)
