"""The demo (main job) and the trainer benchmark keep working (smoke runs, no timings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_trainers
from tunewire.trainer import main_job


@pytest.mark.slow
def test_demo_runs_a_small_job_and_prints_the_best_trial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main_job.main(["--trials", "4", "--algorithm", "random", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 trials in" in out
    for line in ("best trial #", "validation loss", "test accuracy", "hyperparameters"):
        assert line in out
    assert (tmp_path / "demo.db").exists()


@pytest.mark.slow
def test_bench_trainers_quick(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_trainers.main(["--quick", "--trials", "4", "--no-record"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| sobol | 2 | 4 |" in out
    assert "two workers can do at most" in out  # the calibration ran
