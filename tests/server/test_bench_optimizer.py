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
