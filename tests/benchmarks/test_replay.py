"""The replay of recorded curves: the nearest recorded configuration, and simulated workers
that drive a real server epoch by epoch on the recorded clock and obey its stop decisions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from benchmarks.curves import CurveTable
from benchmarks.replay import Replay, TunewireCurveSession, regret_area, replay, time_to_reach
from tunewire.client import TuningClient
from tunewire.server.app import RunningServer


def test_the_nearest_configuration_keeps_the_active_parameters(tiny_table: CurveTable) -> None:
    for row, params in enumerate(tiny_table.params):
        assert tiny_table.nearest(params) == row
    centre, minimum = tiny_table.params  # 3 hidden layers with Adam; none, with SGD
    # Closer to the minimum in every shared coordinate, but with the centre's structure.
    like_centre = dict(centre, lr=minimum["lr"], batch_size=minimum["batch_size"])
    assert tiny_table.nearest(like_centre) == 0
    like_minimum = dict(minimum, lr=centre["lr"], dropout=centre["dropout"])
    assert tiny_table.nearest(like_minimum) == 1


class CountingSession(TunewireCurveSession):
    """Records every report and what the server answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports: dict[int, list[tuple[int, bool]]] = {}

    def report(
        self, handle: Any, epoch: int, metrics: Mapping[str, float], last_step: bool
    ) -> bool:
        stop = super().report(handle, epoch, metrics, last_step)
        self.reports.setdefault(handle.id, []).append((epoch, stop))
        return stop


def test_simulated_workers_drive_a_real_server_and_obey_stop_decisions(
    tiny_table: CurveTable, sqlite_server: RunningServer
) -> None:
    # A bound between the two configurations' first-epoch losses: every trial trained as
    # the worse one is stopped after epoch 1, the others train their 2 epochs.
    first = tiny_table.curves["val_loss"][:, :, 0]
    worse = int(np.argmax(first.min(axis=1)))
    bound = float((first[worse].min() + first[1 - worse].max()) / 2)
    assert first[worse].min() > bound > first[1 - worse].max()
    with TuningClient(sqlite_server.target) as client:
        session = CountingSession(
            client,
            tiny_table,
            algorithm="random",
            early_stopping={"rule": "threshold", "bound": bound, "after_step": 1},
            seed=3,
        )
        result = replay(session, tiny_table, seed=0, workers=2, budget_seconds=1e9, max_trials=8)
        records = {t.id: t for t in client.list_trials(session.study)}
    assert len(result.trials) == len(records) == 8
    assert {t.worker for t in result.trials} == {0, 1}
    seconds = np.nan_to_num(tiny_table.curves["epoch_seconds"])
    for trial in result.trials:
        record, reports = records[trial.handle.id], session.reports[trial.handle.id]
        stopped = trial.row == worse
        assert trial.stopped == stopped
        assert reports == ([(1, True)] if stopped else [(1, False), (2, False)])
        assert record.state == ("stopped_early" if stopped else "completed")
        assert [step for step, _ in record.measurements] == [e for e, _ in reports]
        assert record.final_metrics is not None
        assert record.final_metrics["epochs_trained"] == trial.epochs
        duration = tiny_table.pretrain_seconds[trial.row, trial.seed_slot]
        duration += seconds[trial.row, trial.seed_slot, : trial.epochs].sum()
        assert trial.ended - trial.started == pytest.approx(duration, rel=1e-5)
    assert result.epochs_trained == sum(t.epochs for t in result.trials)
    assert len(result.times) == 8 and result.times == sorted(result.times)
    assert np.isfinite(result.regrets).all()


def test_anytime_summaries_read_the_median_over_seeds() -> None:
    runs = [
        Replay(10.0, times=[1.0, 4.0], regrets=[0.5, 0.1]),
        Replay(10.0, times=[2.0, 6.0], regrets=[0.4, 0.2]),
        Replay(10.0, times=[3.0], regrets=[0.3]),
    ]
    # Medians: t=2 -> 0.5 (0.5, 0.4, inf); t=3 -> 0.4; t=4 -> 0.3; t=6 -> 0.2.
    assert time_to_reach(runs, 0.3) == 4.0
    assert time_to_reach(runs, 0.05) is None
    assert np.isfinite(regret_area(runs, 10.0))


class ScriptedSession:
    """Suggests the table's configurations in turn and never stops a trial."""

    def __init__(self, table: CurveTable) -> None:
        self.table = table
        self.asked = 0
        self.outcomes: dict[int, str] = {}

    def ask(self, worker: int) -> tuple[Any, dict[str, Any]]:
        self.asked += 1
        return self.asked, dict(self.table.params[(self.asked - 1) % len(self.table)])

    def report(
        self, handle: Any, epoch: int, metrics: Mapping[str, float], last_step: bool
    ) -> bool:
        return False

    def complete(self, handle: Any, metrics: Mapping[str, float]) -> None:
        self.outcomes[handle] = "completed"

    def infeasible(self, handle: Any, reason: str) -> None:
        self.outcomes[handle] = reason


def test_a_diverged_run_replays_as_an_infeasible_trial(tiny_table: CurveTable) -> None:
    table = tiny_table.rows([0, 1])
    for name, values in table.curves.items():
        if name != "epoch_seconds":
            values[1, :, 1:] = np.nan  # configuration 1 diverges in epoch 2, every seed
    table.infeasible[1, :] = True
    table.reasons = {"1,0": "val_loss became nan at epoch 2", "1,1": "diverged"}
    session = ScriptedSession(table)
    result = replay(session, table, seed=0, workers=1, budget_seconds=1e9, max_trials=4)
    assert [t.row for t in result.trials] == [0, 1, 0, 1]
    assert [t.infeasible for t in result.trials] == [False, True, False, True]
    assert [t.epochs for t in result.trials] == [2, 1, 2, 1]
    assert session.outcomes[2] in ("val_loss became nan at epoch 2", "diverged")
    assert len(result.times) == 2  # only finished, feasible trials can be the incumbent
    assert result.epochs_trained == 6
    assert np.isnan(table.expected_test_error(1, 2)) and np.isfinite(table.test_error(1, 0, 1))
