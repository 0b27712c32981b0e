"""The multi-fidelity benchmark keeps working: a smoke run on a tiny recorded table (no
regrets or timings asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import bench_multi_fidelity


@pytest.mark.slow
def test_bench_multi_fidelity_quick_replays_every_kind_of_arm(
    tiny_curves_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench_multi_fidelity, "OUT", tmp_path / "out")
    arms = [
        "tunewire gp (no stopping)",
        "tunewire gp_mf + ASHA",
        "tunewire random + ASHA",
        "Optuna TPE + Hyperband",
    ]
    code = bench_multi_fidelity.main(
        ["--quick", "--curves", str(tiny_curves_dir), "--arms", ",".join(arms), "--no-record"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert not list((tmp_path / "out").glob("*.db*"))  # the run's database is removed
    assert "| digits-mlp | tunewire gp (no stopping) | 4 |" in out
    assert "| digits-mlp | tunewire gp_mf + ASHA | 4 |" in out
    assert "| digits-mlp | tunewire random + ASHA | 4 |" in out
    if importlib.util.find_spec("optuna") is not None:
        assert "| digits-mlp | Optuna TPE + Hyperband | 4 |" in out


@pytest.mark.slow
def test_bench_multi_fidelity_latency_times_both_models_on_the_same_histories(
    tiny_curves_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_multi_fidelity.main(
        ["--latency", "--quick", "--curves", str(tiny_curves_dir), "--no-record"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| digits-mlp | 12 |" in out and "| digits-mlp | 24 |" in out
