"""Early stopping through the real service: concurrent workers under ASHA and the median
rule, decisions recorded with the trials and shown by `tunewire study show`."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.server.helpers import BlockingService
from tunewire.client import TuningClient
from tunewire.client.cli import main as cli_main
from tunewire.server.app import RunningServer
from tunewire.server.domain.study import Measurement, StudySpec
from tunewire.server.storage.sql import SqlStorage
from tunewire.server.storage.sql.repository import SqlStudyStore

SPACE = [{"name": "quality", "type": "float", "min": 0.0, "max": 1.0}]


def curve(quality: float, step: int) -> float:
    """A learning curve whose plateau is set by `quality` (higher is worse)."""
    return quality + math.exp(-0.3 * step)


def run_workers(target: str, study: str, workers: int, steps: int) -> dict[int, int]:
    """Concurrent workers that obey stop decisions; returns steps run per trial."""
    ran: dict[int, int] = {}
    lock = threading.Lock()

    def work(i: int) -> None:
        client = TuningClient(target)
        for trial in client.worker_loop(study, f"w{i}", poll_interval=0.05):
            q = float(trial.params["quality"])
            done = 0
            for step in range(steps):
                done += 1
                if trial.report(step, {"loss": curve(q, step)}):
                    break
            trial.complete()
            with lock:
                ran[trial.id] = done
        client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return ran


@pytest.mark.parametrize(
    "policy,max_share",
    [
        ({"rule": "successive_halving", "min_resource": 1, "reduction_factor": 3}, 0.6),
        # The median rule compares a trial's best value with running averages: milder.
        ({"rule": "median", "min_completed_trials": 3, "grace_period_steps": 2}, 0.95),
    ],
)
def test_concurrent_workers_stop_bad_trials(
    sqlite_server: RunningServer, policy: dict, max_share: float
) -> None:
    client = TuningClient(sqlite_server.target)
    client.create_study(
        "es",
        {
            "parameters": SPACE,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "sobol",
            "max_trials": 24,
            "early_stopping": policy,
        },
    )
    steps = 12
    ran = run_workers(sqlite_server.target, "es", 4, steps)
    trials = client.list_trials("es")
    assert len(trials) == 24 and len(ran) == 24
    stopped = [t for t in trials if t.state == "stopped_early"]
    completed = [t for t in trials if t.state == "completed"]
    assert stopped and completed
    for t in stopped:
        # the worker stopped at the decision's step and the rule is recorded
        assert t.stop_rule == policy["rule"]
        assert ran[t.id] == t.stopped_at_step + 1
        assert len(t.measurements) == ran[t.id]
    # compute saved, and the best configuration ran to the end
    assert sum(ran.values()) < max_share * 24 * steps
    best = min(trials, key=lambda t: t.params["quality"])
    assert best.state == "completed" and ran[best.id] == steps
    client.close()


def test_study_show_lists_stop_decisions(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TuningClient(sqlite_server.target)
    client.create_study(
        "th",
        {
            "parameters": SPACE,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "random",
            "early_stopping": {"rule": "threshold", "bound": 0.5, "after_step": 1},
        },
    )
    (trial,) = client.suggest("th", "w")
    trial.report(0, {"loss": 2.0})
    assert trial.report(1, {"loss": 2.0})
    trial.complete()
    assert cli_main(["study", "show", "th", "--server", sqlite_server.target]) == 0
    out = capsys.readouterr().out
    assert "1 stopped early" in out and "[stopped at step 1 by threshold]" in out
    client.close()


def test_sqlite_median_decisions_read_peers_outside_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A median decision reads the other trials (a pass over their reports in a large
    study) from a snapshot before the report's write transaction: while one report's
    decision is reading, another worker's report commits, and the decisions are those
    of the in-transaction path."""
    service = BlockingService(SqlStorage(f"sqlite:///{tmp_path / 'peers.db'}"))
    trials = service.service.trials  # reports on the test's threads
    spec = StudySpec.from_dict(
        {
            "parameters": SPACE,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "random",
            "early_stopping": {"rule": "median", "min_completed_trials": 2},
        }
    )
    try:
        service.create_study("peers", spec)
        for i in range(3):  # completed peers with losses 1.0, 1.1, 1.2 at every step
            t = service.suggest_trials("peers", 1, f"done{i}").trials[0]
            for step in range(3):
                trials.report("peers", t.id, f"done{i}", Measurement(step, {"loss": 1 + i / 10}))
            service.complete_trial("peers", t.id, f"done{i}", Measurement(0, {"loss": 1 + i / 10}))
        slow = service.suggest_trials("peers", 1, "slow").trials[0]
        other = service.suggest_trials("peers", 1, "other").trials[0]
        assert trials.stopping.reads_peers("peers")  # learnt from the reports above

        reading, release = threading.Event(), threading.Event()
        real = SqlStudyStore.peer_median

        def held_peer_median(store: SqlStudyStore, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "slow-report":
                reading.set()
                assert release.wait(10)
            return real(store, *args, **kwargs)

        monkeypatch.setattr(SqlStudyStore, "peer_median", held_peer_median)
        result: dict[str, Any] = {}

        def slow_report() -> None:
            result["slow"] = trials.report("peers", slow.id, "slow", Measurement(1, {"loss": 5.0}))

        thread = threading.Thread(target=slow_report, name="slow-report")
        thread.start()
        try:
            assert reading.wait(10)
            # The other worker's report (and its own median decision) commits meanwhile.
            meanwhile = threading.Thread(
                target=lambda: result.update(
                    other=trials.report("peers", other.id, "other", Measurement(1, {"loss": 0.5}))
                )
            )
            meanwhile.start()
            meanwhile.join(5)
            assert "other" in result, "the report waited for the other report's decision"
            assert result["other"][0] is None  # 0.5 is better than the median 1.1
            assert thread.is_alive()
        finally:
            release.set()
            thread.join(10)
        decision, trial = result["slow"]
        assert decision is not None and decision.rule == "median"  # 5.0 > the median 1.1
        assert service.get_trial("peers", slow.id).stop_decision == decision
    finally:
        service.close()
