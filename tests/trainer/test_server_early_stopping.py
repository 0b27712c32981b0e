"""End to end: real training on digits where the server stops bad configurations early,
and the trainer obeys at once and completes them as stopped early."""

from __future__ import annotations

import pytest

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer
from tunewire.trainer.tasks import BUILTIN_TASKS
from tunewire.trainer.worker import WorkerSettings, run_worker


@pytest.mark.slow
def test_bad_configurations_are_stopped_by_the_server(sqlite_server: RunningServer) -> None:
    epochs = 9
    spec = BUILTIN_TASKS["digits-mlp"].default_spec()
    spec["parameters"] = list(spec["parameters"]) + [
        {"name": "max_epochs", "type": "discrete", "values": [epochs]},
        # the trainer's own patience out of the way: every stop here is the server's
        {"name": "patience", "type": "discrete", "values": [epochs]},
    ]
    spec.update(
        algorithm="sobol",
        seed=3,
        max_trials=12,
        early_stopping={
            "rule": "successive_halving",
            "min_resource": 1,
            "reduction_factor": 3,
            "max_resource": epochs,
        },
    )
    client = TuningClient(sqlite_server.target)
    client.create_study("asha", spec)
    summary = run_worker(
        WorkerSettings(
            server=sqlite_server.target,
            study="asha",
            task="digits-mlp",
            device="cpu",
            progress="off",
            seed=0,
            create_study=False,
        )
    )
    assert summary.exit_code == 0, summary.message
    trials = client.list_trials("asha")
    assert len(trials) == 12
    stopped = [t for t in trials if t.state == "stopped_early"]
    completed = [t for t in trials if t.state == "completed"]
    assert stopped and completed
    for t in stopped:
        assert t.stop_rule == "successive_halving"
        # the trainer stopped at the report that got the decision: no report after it
        assert t.measurements[-1][0] == t.stopped_at_step
        assert t.final_metrics is not None
        assert t.final_metrics["epochs_trained"] < epochs
    best = client.best_trials("asha")[0]
    assert best.state == "completed"
    assert (
        sum(t.final_metrics["epochs_trained"] for t in trials if t.final_metrics)
        < 0.7 * 12 * epochs
    )
    client.close()
