"""The part every framework callback shares, with a `tunewire train` reporter (offline) and
with a client trial (against a real server); no framework needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunewire.client import TuningClient
from tunewire.integrations.objective import MonitorMissing, ObjectiveTracker
from tunewire.trainer import Reporter, TrialInfeasible


def test_a_reporter_gets_every_value_and_the_task_returns_the_best() -> None:
    reporter = Reporter(objective="accuracy", maximize=True, send=lambda step, m, last: step == 3)
    tracker = ObjectiveTracker(reporter, monitor="val_acc")
    assert [tracker.observe(step, v) for step, v in ((1, 0.5), (2, 0.8), (3, 0.7))] == [
        False,
        False,
        True,
    ]
    assert tracker.final_metrics == {"accuracy": 0.8} and tracker.best_step == 2
    assert reporter.history == [
        (1, {"accuracy": 0.5}),
        (2, {"accuracy": 0.8}),
        (3, {"accuracy": 0.7}),
    ]
    tracker.finish()  # the worker, not the tracker, completes a reporter's trial


def test_a_nan_through_a_reporter_raises_what_the_worker_marks_infeasible() -> None:
    tracker = ObjectiveTracker(Reporter(), monitor="val_loss")
    with pytest.raises(TrialInfeasible, match="val_loss became nan at step 4"):
        tracker.observe(4, float("nan"))


def test_a_client_trial_that_ends_without_reports_is_failed(client: TuningClient) -> None:
    client.create_study(
        "silent",
        {
            "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "random",
            "max_trials": 1,
        },
    )
    (trial,) = client.suggest("silent", "w")
    tracker = ObjectiveTracker(trial, monitor="val_loss")
    assert (tracker.objective, tracker.maximize) == ("loss", False)
    with pytest.raises(MonitorMissing, match="before any 'val_loss' was reported"):
        tracker.finish()
    (record,) = client.list_trials("silent")
    assert record.state == "failed" and "before any 'val_loss'" in record.reason


def test_the_package_loads_without_any_framework() -> None:
    code = (
        "import sys, tunewire.integrations, tunewire.integrations.objective; "
        "assert not {'lightning', 'transformers'} & set(sys.modules), 'framework imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
