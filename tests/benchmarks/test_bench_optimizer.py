"""The optimiser benchmark keeps working: a smoke run of its sequential and parallel
comparisons (no timings or regrets asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import bench_optimizer


@pytest.mark.slow
def test_bench_optimizer_quick_runs_every_model_based_arm_with_four_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_optimizer, "OUT", tmp_path / "benchmarks" / "out")
    code = bench_optimizer.main(
        ["--quick", "--arms", "gp,sobol,optuna-gp", "--parallel-problems", "branin", "--no-record"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| branin (12) | tunewire gp | " in out  # the parallel row: 1 and 4 workers
    assert (
        "tunewire sobol |" in out
        and "| branin (12) | tunewire sobol |" not in out.split("Parallel:")[1]
    )  # quasi-random points do not depend on running trials: no parallel row
    if importlib.util.find_spec("optuna") is not None:
        assert "| branin (12) | Optuna GPSampler | " in out.split("Parallel:")[1]
    assert (tmp_path / "benchmarks" / "out" / "bench_optimizer_parallel.png").stat().st_size > 0


def test_evaluations_to_reach_reads_the_median_curve_over_seeds() -> None:
    runs = [
        bench_optimizer.Run(values=[5.0, 3.0, 2.0, 1.0]),
        bench_optimizer.Run(values=[4.0, 4.0, 1.5, 1.5]),
        bench_optimizer.Run(values=[6.0, 2.5, 2.5, 0.5]),
    ]
    # Best-so-far per seed: [5,3,2,1], [4,4,1.5,1.5], [6,2.5,2.5,0.5]; medians 5, 3, 2, 1.
    assert bench_optimizer.evaluations_to_reach(runs, 0.0, 3.0) == 2
    assert bench_optimizer.evaluations_to_reach(runs, 0.0, 1.0) == 4
    assert bench_optimizer.evaluations_to_reach(runs, 0.0, 0.9) is None


def test_parallel_row_says_when_four_workers_reach_one_workers_regret() -> None:
    problem = bench_optimizer.Problem("toy", [], lambda p: 0.0, lambda: 0.0, 4)
    seq = [bench_optimizer.Run(values=[4.0, 3.0, 2.0, 1.0], latencies=[0.1] * 4)]
    par = [
        bench_optimizer.Run(values=[4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 1.0, 0.5], latencies=[0.2] * 8)
    ]
    row = bench_optimizer.parallel_row(problem, "arm", seq, par)
    # Regret 1.0 after 4 evaluations alone; 4 workers get there at 6 (1.5x the
    # evaluations, in ceil(6/4) = 2 evaluation times instead of 4: 2.0x sooner).
    assert "| 4 / 6 (1.50x) | 2.0x |" in row
    never = [bench_optimizer.Run(values=[4.0] * 8, latencies=[0.2] * 8)]
    assert "| 4 / not in 8 | — |" in bench_optimizer.parallel_row(problem, "arm", seq, never)


def test_parallel_row_times_one_worker_by_when_it_reached_its_median() -> None:
    # One worker stops improving after 2 of its 8 evaluations; 4 workers get there at 4:
    # one evaluation time against two, not against the whole budget of 8.
    problem = bench_optimizer.Problem("toy", [], lambda p: 0.0, lambda: 0.0, 8)
    seq = [bench_optimizer.Run(values=[3.0, 1.0] + [2.0] * 6, latencies=[0.1] * 8)]
    par = [bench_optimizer.Run(values=[3.0, 2.0, 2.0, 1.0] + [2.0] * 12, latencies=[0.1] * 16)]
    assert "| 2 / 4 (2.00x) | 2.0x |" in bench_optimizer.parallel_row(problem, "arm", seq, par)
