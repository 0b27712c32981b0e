"""The demo (main job) and the trainer benchmark keep working (smoke runs, no timings)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert f"{main_job.tunewire_command()} serve --storage sqlite:///{tmp_path}/demo.db" in out


@pytest.mark.parametrize("venv_on_path", [False, True])
def test_the_demo_hint_names_a_tunewire_command_that_runs_as_printed(
    venv_on_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `bash scripts/demo.sh` the virtualenv is not activated, so a bare `tunewire`
    would not be found; the hint must print a command a new shell runs as it is."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("tunewire is not installed in a virtualenv here")
    bin_dir = str(Path(sys.executable).parent)
    path = "/usr/bin:/bin" if not venv_on_path else f"{bin_dir}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", path)
    command = main_job.tunewire_command()
    assert (command == "tunewire") is venv_on_path
    result = subprocess.run(
        f"{command} study --help",
        shell=True,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "show" in result.stdout


@pytest.mark.slow
def test_bench_trainers_quick(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_trainers.main(["--quick", "--trials", "4", "--no-record"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| sobol | 2 | 4 |" in out
    assert "two workers can do at most" in out  # the calibration ran
