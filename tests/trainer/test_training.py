"""Training of the built-in tasks offline (a Reporter without a server): metrics, early
stopping, the server's stop decision, pretraining, divergence, reproducibility."""

from __future__ import annotations

import pytest

from tunewire.trainer import Reporter, TrialInfeasible
from tunewire.trainer.tasks import BUILTIN_TASKS

FAST = {"hidden_layers": 1, "units_1": 32, "max_epochs": 6, "batch_size": 64}


def losses(reporter: Reporter) -> list[float]:
    return [m["val_loss"] for _, m in reporter.history]


def test_digits_reports_every_epoch_and_returns_the_extra_metrics() -> None:
    reporter = Reporter(seed=0)
    metrics = BUILTIN_TASKS["digits-mlp"](FAST, reporter)
    assert [step for step, _ in reporter.history] == list(range(1, 7))
    assert {"val_loss", "train_loss", "val_accuracy"} <= set(reporter.history[0][1])
    for name in ("val_loss", "test_accuracy", "epochs_trained", "train_seconds", "n_params"):
        assert name in metrics
    assert metrics["val_loss"] == min(losses(reporter))  # the best epoch's weights
    assert metrics["n_params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert metrics["test_accuracy"] > 0.85


def test_same_parameters_and_seed_give_the_same_losses_on_cpu() -> None:
    params = {**FAST, "dropout": 0.3, "pretrain_epochs": 1}
    a, b, c = Reporter(seed=5), Reporter(seed=5), Reporter(seed=6)
    for r in (a, b, c):
        BUILTIN_TASKS["digits-mlp"](params, r)
    assert a.history == b.history
    assert losses(a) != losses(c)


def test_patience_stops_and_restores_the_best_weights() -> None:
    # A large learning rate overfits / oscillates quickly on tiny wine.
    reporter = Reporter(seed=0)
    params = {"hidden_layers": 2, "units": 256, "lr": 0.05, "patience": 2, "max_epochs": 200}
    metrics = BUILTIN_TASKS["wine-mlp"](params, reporter)
    epochs = int(metrics["epochs_trained"])
    assert epochs < 200
    assert epochs == metrics["best_epoch"] + 2
    assert metrics["val_loss"] == pytest.approx(min(losses(reporter)))


def test_the_servers_stop_decision_ends_training_at_once() -> None:
    reporter = Reporter(seed=0, send=lambda step, metrics, last: step == 3)
    metrics = BUILTIN_TASKS["digits-mlp"]({**FAST, "max_epochs": 20}, reporter)
    assert len(reporter.history) == 3 and metrics["epochs_trained"] == 3
    assert reporter.stop_requested


def test_autoencoder_pretraining_runs_before_fine_tuning() -> None:
    statuses: list[str] = []

    class Recorder:
        def epoch(self, step: int, total: int, metrics: object, best: object) -> None:
            statuses.append(f"epoch {step}/{total}")

        def status(self, text: str) -> None:
            statuses.append(text)

    reporter = Reporter(seed=0, progress=Recorder())
    metrics = BUILTIN_TASKS["digits-mlp"]({**FAST, "pretrain_epochs": 2}, reporter)
    assert metrics["pretrain_epochs_run"] == 2
    assert statuses[0].startswith("pretrain 1/2 recon ")
    assert statuses[2] == "epoch 1/6"
    # A linear model has no hidden layer to pretrain.
    linear = BUILTIN_TASKS["digits-mlp"](
        {"hidden_layers": 0, "pretrain_epochs": 2, "max_epochs": 2}, Reporter()
    )
    assert linear["pretrain_epochs_run"] == 0


def test_regression_reports_rmse_in_target_units() -> None:
    metrics = BUILTIN_TASKS["diabetes-mlp"]({"max_epochs": 30, "lr": 0.003}, Reporter())
    assert "test_rmse" in metrics and "test_accuracy" not in metrics
    assert 40 < metrics["test_rmse"] < 80  # the target's std is about 77


@pytest.mark.parametrize("task", ["breast-cancer-mlp", "wine-mlp"])
def test_small_classification_tasks_learn(task: str) -> None:
    metrics = BUILTIN_TASKS[task]({"max_epochs": 30}, Reporter())
    assert metrics["test_accuracy"] > 0.85


def test_a_diverging_configuration_is_infeasible() -> None:
    params = {"optimizer": "sgd", "lr": 10.0, "momentum": 0.99, "hidden_layers": 3}
    with pytest.raises(TrialInfeasible, match="training diverged"):
        BUILTIN_TASKS["diabetes-mlp"](params, Reporter())


def test_the_reporter_rejects_non_finite_metrics() -> None:
    with pytest.raises(TrialInfeasible, match="val_loss became inf at step 4"):
        Reporter().report(4, {"val_loss": float("inf")})


@pytest.mark.slow
def test_mnist_cnn_trains_an_epoch() -> None:
    params = {
        "conv_layers": 1,
        "conv_channels": 8,
        "hidden_layers": 0,
        "max_epochs": 1,
        "batch_size": 128,
        "pretrain_epochs": 1,
    }
    metrics = BUILTIN_TASKS["mnist-cnn"](params, Reporter())
    assert metrics["test_accuracy"] > 0.7
    assert metrics["pretrain_epochs_run"] == 1
