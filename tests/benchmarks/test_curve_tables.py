"""The shipped learning-curve tables load, hold complete runs of the task's default space,
and say how they were recorded (benchmarks/data/curves/README.md)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.curves import CURVES_DIR, curve_file, load_curves
from tunewire.trainer.tasks import BUILTIN_TASKS

SHIPPED = ["digits-mlp", "breast-cancer-mlp", "wine-mlp", "diabetes-mlp"]


@pytest.mark.parametrize("task", SHIPPED)
def test_a_shipped_table_is_complete_and_replayable(task: str) -> None:
    assert curve_file(task, CURVES_DIR).exists(), f"{task}: run benchmarks.record_curves"
    table = load_curves(task)
    assert len(table) >= 500 and table.seeds == (0, 1)
    assert table.done.all()
    assert table.max_epochs == BUILTIN_TASKS[task].defaults.max_epochs
    names = {p["name"] for p in BUILTIN_TASKS[task].default_spec()["parameters"]}
    assert {p["name"] for p in table.parameters} == names
    ok = ~table.infeasible
    assert ok.mean() > 0.98  # a few runs diverge, and are kept as infeasible
    for metric in ("val_loss", "test_loss", "epoch_seconds"):
        values = table.curves[metric][ok]
        assert values.shape[-1] == table.max_epochs and np.isfinite(values).all()
    assert (table.curves["epoch_seconds"][ok] > 0).all()
    (session,) = table.meta["sessions"]
    assert session["command"].startswith("python -m benchmarks.record_curves")
    assert session["runs"] == len(table) * len(table.seeds)
