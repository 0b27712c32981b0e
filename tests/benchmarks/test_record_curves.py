"""The learning-curve recorder: what it writes is what the trainer reports, every seed and
epoch; diverged runs are kept; a recording resumes and stops at its deadline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.curves import CurveTable, curve_file, load_curves
from benchmarks.record_curves import (
    anchor_count,
    design,
    open_recording,
    parse_counts,
    record,
    record_run,
)
from tests.benchmarks.conftest import TINY_CONFIGS, TINY_EPOCHS, TINY_SEEDS
from tunewire.server.domain.space import Params, SearchSpace
from tunewire.trainer.reporter import Reporter
from tunewire.trainer.tasks import BUILTIN_TASKS


def _space(task: str) -> SearchSpace:
    return SearchSpace.from_dicts(BUILTIN_TASKS[task].default_spec()["parameters"])


def test_the_file_holds_every_seed_and_epoch_and_what_recorded_it(
    tiny_curves_dir: Path, tiny_table: CurveTable
) -> None:
    table = tiny_table
    n, s, e = TINY_CONFIGS, TINY_SEEDS, TINY_EPOCHS
    assert (table.task, table.max_epochs, table.seeds, table.classification) == (
        "digits-mlp",
        e,
        (0, 1),
        True,
    )
    assert set(table.curves) == {
        "val_loss",
        "train_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "epoch_seconds",
    }
    for values in table.curves.values():
        assert values.shape == (n, s, e) and values.dtype == np.float32
        assert np.isfinite(values).all()
    assert table.done.all() and not table.infeasible.any()
    assert table.params == design(_space("digits-mlp"), n)
    assert table.parameters == BUILTIN_TASKS["digits-mlp"].default_spec()["parameters"]
    (session,) = table.meta["sessions"]
    assert session["command"] == "pytest tiny table" and session["runs"] == n * s
    assert session["device"].startswith("cpu") and "torch" in session["versions"]
    assert table.meta["recording_seconds"] > 0
    assert curve_file("digits-mlp", tiny_curves_dir).stat().st_size < 20_000
    assert len(load_curves("digits-mlp", tiny_curves_dir)) == n


@pytest.mark.usefixtures("one_torch_thread")
def test_recorded_curves_are_what_the_trainer_reports(tiny_table: CurveTable) -> None:
    # The task as `tunewire train` calls it, with an offline Reporter and patience off.
    row, slot = 0, 1
    reporter = Reporter(seed=tiny_table.seeds[slot])
    epochs = tiny_table.max_epochs
    final = BUILTIN_TASKS["digits-mlp"](
        dict(tiny_table.params[row], max_epochs=epochs, patience=epochs), reporter
    )
    for name in ("val_loss", "train_loss", "val_accuracy"):
        reported = np.array([m[name] for _, m in reporter.history], dtype=np.float32)
        np.testing.assert_array_equal(reported, tiny_table.curves[name][row, slot])
    replayed = tiny_table.final_metrics(row, slot, epochs)
    for name in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "n_params"):
        assert replayed[name] == pytest.approx(final[name], rel=1e-6), name


@pytest.mark.usefixtures("one_torch_thread")
def test_a_diverged_run_is_recorded_as_infeasible(tmp_path: Path) -> None:
    params: Params = {"hidden_layers": 0, "batch_size": 16, "lr": 10.0, "optimizer": "sgd"}
    run = record_run("diabetes-mlp", 0, params | {"momentum": 0.99}, 0, 0, "cpu", 3, np.inf)
    assert run is not None and run.infeasible and "diverged" in run.reason
    assert np.isnan(run.curves["val_loss"]).all()
    assert np.isfinite(run.curves["epoch_seconds"][0])  # the epoch it diverged in
    recording = open_recording("diabetes-mlp", tmp_path, 1, 1, 3)
    recording.add(run)
    recording.save()
    table = CurveTable.load(recording.path)
    assert table.infeasible.tolist() == [[True]] and table.done.tolist() == [[True]]
    assert "diverged" in table.reasons["0,0"]
    assert set(table.curves) >= {"val_rmse", "test_rmse", "test_loss"}
    assert table.reported_epochs(0, 0) == 0
    assert np.isnan(table.expected_test_error(0, 3))


def test_the_design_starts_with_anchors_and_grows_without_changing() -> None:
    space = _space("digits-mlp")
    short, longer = design(space, anchor_count(space)), design(space, 40)
    assert longer[: len(short)] == short
    assert anchor_count(space) == 11
    assert short[1]["hidden_layers"] == 0 and not any(k.startswith("units") for k in short[1])
    assert short[1]["lr"] == pytest.approx(1e-4) and short[1]["optimizer"] == "sgd"
    assert short[2]["hidden_layers"] == 6 and short[2]["units_6"] == 512
    assert short[2]["lr"] == pytest.approx(0.1) and "momentum" not in short[2]
    corners = {(p["hidden_layers"], p["batch_size"], round(float(p["lr"]), 6)) for p in short[3:]}
    assert corners == {(h, b, lr) for h in (0, 6) for b in (16, 512) for lr in (1e-4, 0.1)}
    for params in longer:
        assert space.validate(params) == params


@pytest.mark.usefixtures("one_torch_thread")
def test_a_recording_resumes_and_stops_at_its_deadline(tmp_path: Path) -> None:
    def run(count: int, deadline: float | None = None) -> CurveTable:
        record(
            ["wine-mlp"],
            {"wine-mlp": count},
            out=tmp_path,
            seeds=1,
            max_epochs=1,
            threads=None,
            deadline_seconds=deadline,
            log=lambda line: None,
        )
        return CurveTable.load(curve_file("wine-mlp", tmp_path))

    first = run(1)
    second = run(3)
    assert [s["runs"] for s in second.meta["sessions"]] == [1, 2]
    np.testing.assert_array_equal(first.curves["val_loss"][0], second.curves["val_loss"][0])
    started = time.perf_counter()
    third = run(6, deadline=1.0)  # already past its cut-off: nothing is trained
    assert time.perf_counter() - started < 10
    assert len(third) == 3 and third.meta["sessions"][-1]["runs"] == 0
    with pytest.raises(SystemExit, match="another recording"):
        open_recording("wine-mlp", tmp_path, 3, 2, 1)


def test_configuration_counts_name_tasks_or_all() -> None:
    tasks = ["digits-mlp", "mnist-cnn"]
    assert parse_counts("512,mnist-cnn=128", tasks) == {"digits-mlp": 512, "mnist-cnn": 128}
    assert parse_counts("7", tasks) == {"digits-mlp": 7, "mnist-cnn": 7}
    with pytest.raises(SystemExit, match="no count"):
        parse_counts("mnist-cnn=3", tasks)
