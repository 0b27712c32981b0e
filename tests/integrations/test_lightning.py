"""The PyTorch Lightning callback against a real server: a small LightningModule trains on
scikit-learn's digits, from `worker_loop` and as a `tunewire train --task` user task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

pytest.importorskip("lightning")

from tests.integrations.lightning_tasks import digits_loaders, fit  # noqa: E402
from tunewire.client import TuningClient  # noqa: E402
from tunewire.integrations.lightning import LightningTrialCallback  # noqa: E402
from tunewire.integrations.objective import MonitorMissing  # noqa: E402
from tunewire.server.app import RunningServer  # noqa: E402
from tunewire.trainer.cli import main as train_main  # noqa: E402

TASKS = Path(__file__).with_name("lightning_tasks.py")
# Lightning's advice for large data sets, and its own use of a torch API torch deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)"),
]


def digits_study(client: TuningClient, name: str, trials: int, **extra: Any) -> None:
    client.create_study(
        name,
        {
            "parameters": [
                {"name": "hidden", "type": "int", "min": 16, "max": 64},
                {"name": "lr", "type": "float", "min": 1e-3, "max": 3e-2, "scale": "log"},
            ],
            "metrics": [{"name": "val_loss", "goal": "minimize"}],
            "algorithm": "random",
            "seed": 5,
            "max_trials": trials,
            **extra,
        },
    )


# val_loss stays far above the bound, so this rule stops every trial at its second report.
STOP_AT_STEP_2 = {"early_stopping": {"rule": "threshold", "bound": 1e-6, "after_step": 2}}


def test_worker_loop_reports_every_epoch_and_completes_with_the_best_value(
    client: TuningClient,
) -> None:
    digits_study(client, "full", trials=1)
    for trial in client.worker_loop("full", "w"):
        with trial, trial.heartbeat():
            trainer = fit(trial.params, LightningTrialCallback(trial), max_epochs=3)
        assert trainer.current_epoch == 3
    (record,) = client.list_trials("full")
    assert record.state == "completed"
    assert [step for step, _ in record.measurements] == [1, 2, 3]
    best = min(m["val_loss"] for _, m in record.measurements)
    assert record.final_metrics == {"val_loss": pytest.approx(best)}


def test_worker_loop_obeys_the_servers_stop(client: TuningClient) -> None:
    digits_study(client, "stopped", trials=1, **STOP_AT_STEP_2)
    for trial in client.worker_loop("stopped", "w"):
        with trial, trial.heartbeat():
            callback = LightningTrialCallback(trial)
            trainer = fit(trial.params, callback, max_epochs=6)
        assert trainer.current_epoch == 2, "training ended after the epoch the server stopped"
        assert callback.tracker.should_stop
    (record,) = client.list_trials("stopped")
    assert record.state == "stopped_early" and record.stopped_at_step == 2
    assert [step for step, _ in record.measurements] == [1, 2]
    assert record.final_metrics is not None and record.final_metrics["val_loss"] > 0


@pytest.mark.parametrize("step", ["epoch", "global_step"])
def test_a_full_length_run_is_completed_under_a_rule_that_would_stop_its_last_step(
    client: TuningClient, step: Literal["epoch", "global_step"]
) -> None:
    """The threshold rule would stop the report of the second epoch, the run's last: the
    callback marks it as the last step, so the trial ends completed, not stopped early."""
    last = 2 if step == "epoch" else 2 * len(digits_loaders()[0])
    rule = {"early_stopping": {"rule": "threshold", "bound": 1e-6, "after_step": last}}
    digits_study(client, "full-length", trials=1, **rule)
    for trial in client.worker_loop("full-length", "w"):
        with trial, trial.heartbeat():
            callback = LightningTrialCallback(trial, step=step)
            trainer = fit(trial.params, callback, max_epochs=2)
        assert trainer.current_epoch == 2 and not callback.tracker.should_stop
    (record,) = client.list_trials("full-length")
    assert record.state == "completed" and record.stopped_at_step is None
    assert [s for s, _ in record.measurements][-1] == last


def test_a_nan_loss_marks_the_trial_infeasible_and_stops_training(client: TuningClient) -> None:
    digits_study(client, "nan", trials=1)
    for trial in client.worker_loop("nan", "w"):
        with trial, trial.heartbeat():
            trainer = fit(trial.params, LightningTrialCallback(trial), nan_from_epoch=2)
        assert trainer.current_epoch == 2
    (record,) = client.list_trials("nan")
    assert record.state == "infeasible"
    assert "val_loss became nan at step 2" in record.reason


def test_a_metric_that_is_not_logged_fails_the_trial_with_what_was_logged(
    client: TuningClient,
) -> None:
    digits_study(client, "typo", trials=1)
    for trial in client.worker_loop("typo", "w"):
        with pytest.raises(MonitorMissing, match="'val_los' was not logged \\(logged: val_loss\\)"):
            with trial:
                fit(trial.params, LightningTrialCallback(trial, monitor="val_los"), max_epochs=1)
    (record,) = client.list_trials("typo")
    assert record.state == "failed" and "'val_los' was not logged" in record.reason


def test_tunewire_train_runs_a_lightning_task(
    sqlite_server: RunningServer, client: TuningClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tunewire train --task lightning_tasks.py:train`: the reporter path, stop obeyed."""
    digits_study(client, "cli", trials=2, **STOP_AT_STEP_2)
    flags = ["--server", sqlite_server.target, "--devices", "cpu", "--progress", "off"]
    code = train_main(["--study", "cli", "--task", f"{TASKS}:train", *flags])
    assert code == 0, capsys.readouterr()
    records = client.list_trials("cli")
    assert [r.state for r in records] == ["stopped_early", "stopped_early"]
    for record in records:
        assert [step for step, _ in record.measurements] == [1, 2]
        best = min(m["val_loss"] for _, m in record.measurements)
        assert record.final_metrics is not None
        assert record.final_metrics["val_loss"] == pytest.approx(best)

    digits_study(client, "cli-nan", trials=1)
    code = train_main(["--study", "cli-nan", "--task", f"{TASKS}:train_until_nan", *flags])
    assert code == 0, capsys.readouterr()
    (record,) = client.list_trials("cli-nan")
    assert record.state == "infeasible" and "val_loss became nan at step 2" in record.reason
