"""Does server-side early stopping save compute without losing the best configurations?

    python -m benchmarks.bench_early_stopping                 # both parts
    python -m benchmarks.bench_early_stopping --part synthetic  # seconds per seed
    python -m benchmarks.bench_early_stopping --part real       # digits MLP, minutes
    python -m benchmarks.bench_early_stopping --part cost       # report latency, large studies
    python -m benchmarks.bench_early_stopping --quick           # smoke run

1. Synthetic learning curves, many seeds: tunewire's policies (through the real gRPC
   service) and Optuna's MedianPruner / SuccessiveHalvingPruner are fed the same curves in
   the same order. Compute used (steps run / steps without stopping), regret of the best
   fully-trained configuration, and how many of the true top-5 were stopped.
2. Real training: the digits MLP task (max 50 epochs), the same number of trials, policies
   none / median / ASHA with random search, and the GP with and without ASHA (how stopped
   trials feed the optimiser), 3 seeds: epochs trained, CPU-seconds, best validation loss, test
   accuracy of the best trial, and how many of the final top-5 were stopped.
3. Cost in a large study: the latency of one report (with its stop decision) while a new
   trial runs 50 steps beside 100-1,000 completed trials of 50 steps each, tunewire through
   gRPC on SQLite against Optuna's pruners on its SQLite RDBStorage.
Appends tables to benchmarks/RESULTS.md and writes benchmarks/early_stopping_curves.png.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import append_results

PLOT = Path(__file__).resolve().parent / "early_stopping_curves.png"

TUNEWIRE_POLICIES: dict[str, dict[str, Any]] = {
    "none": {"rule": "none"},
    "tunewire median": {"rule": "median", "min_completed_trials": 5, "grace_period_steps": 1},
    "tunewire median (step values)": {
        "rule": "median",
        "min_completed_trials": 5,
        "grace_period_steps": 1,
        "use_step_values": True,
    },
    "tunewire ASHA": {"rule": "successive_halving", "min_resource": 1, "reduction_factor": 3},
}


def synthetic_curves(seed: int, n: int, steps: int) -> np.ndarray:
    """n noisy learning curves: a power-law decay to a plateau that sets the final value.
    Slow learners with good plateaus make curves cross, as in real training."""
    rng = np.random.default_rng(seed)
    plateau = rng.lognormal(mean=-1.0, sigma=0.6, size=n)
    scale = rng.uniform(0.5, 2.0, size=n)
    rate = rng.uniform(0.3, 1.5, size=n)
    t = np.arange(1, steps + 1)[None, :]
    noise = rng.normal(0.0, 0.01, size=(n, steps))
    return plateau[:, None] + scale[:, None] * t ** (-rate[:, None]) + noise


@dataclass
class Outcome:
    steps_run: int
    final: dict[int, float]  # trial index -> value at the last step, for unstopped trials
    stopped: set[int]
    stopped_at: dict[int, int]


def run_tunewire(target: str, policy: dict[str, Any], curves: np.ndarray, tag: str) -> Outcome:
    from tunewire.client import TuningClient

    n, steps = curves.shape
    client = TuningClient(target)
    study = f"es-{tag}"
    client.create_study(
        study,
        {
            "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "random",
            "early_stopping": policy,
        },
    )
    out = Outcome(0, {}, set(), {})
    for i in range(n):
        (trial,) = client.suggest(study, "bench")
        for step in range(steps):
            out.steps_run += 1
            if trial.report(step, {"loss": float(curves[i, step])}):
                out.stopped.add(i)
                out.stopped_at[i] = step
                break
        trial.complete()
        if i not in out.stopped:
            out.final[i] = float(curves[i, -1])
    client.close()
    return out


def run_optuna(pruner: Any, curves: np.ndarray) -> Outcome:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n, steps = curves.shape
    study = optuna.create_study(direction="minimize", pruner=pruner)
    out = Outcome(0, {}, set(), {})
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        pruned = False
        for step in range(steps):
            out.steps_run += 1
            trial.report(float(curves[i, step]), step)
            if trial.should_prune():
                pruned = True
                out.stopped.add(i)
                out.stopped_at[i] = step
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, float(curves[i, -1]))
            out.final[i] = float(curves[i, -1])
    return out


def iqr(values: list[float]) -> str:
    q1, q3 = np.percentile(values, [25, 75])
    return f"[{q1:.3g}, {q3:.3g}]"


def synthetic(seeds: int, n: int, steps: int) -> str:
    from tunewire.server.app import run_in_background

    arms: dict[str, Any] = dict(TUNEWIRE_POLICIES)
    try:
        import optuna

        arms["Optuna MedianPruner"] = lambda: optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=1
        )
        arms["Optuna SuccessiveHalvingPruner"] = lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        )
        missing = ""
    except ImportError:
        missing = " (Optuna not installed: its pruners were skipped; `pip install -e .[bench]`)"
    stats: dict[str, dict[str, list[float]]] = {
        a: {"compute": [], "regret": [], "top5": []} for a in arms
    }
    example: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = run_in_background(f"sqlite:///{tmp}/es.db")
        try:
            for seed in range(seeds):
                curves = synthetic_curves(seed, n, steps)
                finals = curves[:, -1]
                oracle = float(finals.min())
                top5 = set(np.argsort(finals)[:5].tolist())
                for arm, policy in arms.items():
                    if isinstance(policy, dict):
                        outcome = run_tunewire(
                            server.target,
                            policy,
                            curves,
                            f"{seed}-{len(example)}-{re.sub(r'[^A-Za-z0-9]+', '_', arm)}",
                        )
                    else:
                        outcome = run_optuna(policy(), curves)
                    best = min(outcome.final.values()) if outcome.final else float("inf")
                    stats[arm]["compute"].append(outcome.steps_run / (n * steps))
                    stats[arm]["regret"].append(best - oracle)
                    stats[arm]["top5"].append(len(top5 & outcome.stopped))
                    if seed == 0:
                        example[arm] = outcome
        finally:
            server.stop(0)
    lines = [
        f"Synthetic curves: {n} trials x {steps} steps, {seeds} seeds; medians [IQR]{missing}.",
        "",
        "| policy | compute used | compute saved | regret of best full run | true top-5 stopped |",
        "|---|---|---|---|---|",
    ]
    for arm, s in stats.items():
        used = statistics.median(s["compute"])
        lines.append(
            f"| {arm} | {used:.2f} {iqr(s['compute'])} | {1 - used:.0%} | "
            f"{statistics.median(s['regret']):.4f} {iqr(s['regret'])} | "
            f"{statistics.median(s['top5']):.1f} |"
        )
    plot_curves(synthetic_curves(0, n, steps), example)
    return "\n".join(lines)


def plot_curves(curves: np.ndarray, outcomes: dict[str, Outcome]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    shown = [a for a in ("tunewire median", "tunewire ASHA") if a in outcomes]
    fig, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], shown, strict=True):
        outcome = outcomes[arm]
        for i in range(curves.shape[0]):
            if i in outcome.stopped:
                stop = outcome.stopped_at[i]
                ax.plot(range(stop + 1), curves[i, : stop + 1], color="tab:red", alpha=0.5, lw=0.8)
                ax.plot(stop, curves[i, stop], "x", color="tab:red", ms=4)
            else:
                ax.plot(range(curves.shape[1]), curves[i], color="tab:blue", alpha=0.7, lw=0.8)
        ax.set_title(f"{arm}: {len(outcome.stopped)} of {curves.shape[0]} stopped (x)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("validation loss (synthetic)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=80)
    plt.close(fig)


def run_real_policy(
    policy: dict[str, Any], seed: int, trials: int, max_epochs: int, algorithm: str = "random"
) -> dict[int, Any]:
    """One study on the digits MLP with one in-process trainer worker; returns the trials."""
    from tunewire.client import TuningClient
    from tunewire.server.app import run_in_background
    from tunewire.trainer.tasks import BUILTIN_TASKS
    from tunewire.trainer.worker import WorkerSettings, run_worker

    spec = BUILTIN_TASKS["digits-mlp"].default_spec()
    spec["parameters"] = list(spec["parameters"]) + [
        {"name": "max_epochs", "type": "discrete", "values": [max_epochs]}
    ]
    spec.update(algorithm=algorithm, seed=seed, max_trials=trials, early_stopping=policy)
    with tempfile.TemporaryDirectory() as tmp:
        server = run_in_background(f"sqlite:///{tmp}/real.db")
        try:
            client = TuningClient(server.target)
            client.create_study("digits", spec)
            cpu0 = time.process_time()
            run_worker(
                WorkerSettings(
                    server=server.target,
                    study="digits",
                    task="digits-mlp",
                    device="cpu",
                    seed=seed,
                    threads=1,
                    progress="off",
                    create_study=False,
                )
            )
            cpu = time.process_time() - cpu0
            records = {t.id: t for t in client.list_trials("digits", measurements=False)}
            client.close()
        finally:
            server.stop(0)
    records[0] = cpu  # type: ignore[assignment]
    return records


# (label, algorithm, policy). Random search with the same seed proposes the same
# configurations in the same order under every policy, so the "none" run tells which
# configurations really were best. The GP rows show how stopped trials feed the optimiser:
# they enter the GP with the value they completed with (their best before the stop).
REAL_ARMS = [
    ("random, none", "random", "none"),
    ("random, median", "random", "tunewire median"),
    ("random, ASHA", "random", "tunewire ASHA"),
    ("gp, none", "gp", "none"),
    ("gp, ASHA", "gp", "tunewire ASHA"),
]


def real(seeds: int, trials: int, epochs: int) -> str:
    """Real training of the digits MLP under each policy (one worker, one torch thread)."""
    rows: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in REAL_ARMS}
    for seed in range(seeds):
        truth: dict[int, float] = {}
        for label, algorithm, policy_name in REAL_ARMS:
            records = run_real_policy(
                TUNEWIRE_POLICIES[policy_name], seed, trials, epochs, algorithm
            )
            cpu = float(records.pop(0))
            done = [
                t for t in records.values() if t.final_metrics and "val_loss" in t.final_metrics
            ]
            if label == "random, none":
                truth = {t.id: t.final_metrics["val_loss"] for t in done}
            top5 = sorted(truth, key=truth.__getitem__)[:5] if algorithm == "random" else []
            best = min(done, key=lambda t: t.final_metrics["val_loss"])
            result = {
                "epochs": sum(t.final_metrics.get("epochs_trained", 0) for t in done),
                "cpu_seconds": cpu,
                "best_val_loss": best.final_metrics["val_loss"],
                "test_accuracy": best.final_metrics.get("test_accuracy", float("nan")),
                "best_test_accuracy": max(t.final_metrics.get("test_accuracy", 0.0) for t in done),
                "top5_stopped": sum(1 for i in top5 if records[i].state == "stopped_early"),
            }
            for key, value in result.items():
                rows[label].setdefault(key, []).append(float(value))
            print(f"  seed {seed} {label}: {result}", flush=True)
    lines = [
        f"Real training: digits MLP, {trials} trials, max {epochs} epochs (the trainer's own "
        f"patience of 5 epochs stays on as a second line), one worker, {seeds} seeds; medians.",
        "",
        "| algorithm, policy | epochs trained | fewer than without stopping | CPU-seconds | "
        "best val loss | its test accuracy | best test accuracy | top-5 wrongly stopped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, algorithm, _ in REAL_ARMS:
        r = rows[label]
        base = statistics.median(rows[f"{algorithm}, none"]["epochs"])
        ep = statistics.median(r["epochs"])
        lines.append(
            f"| {label} | {ep:.0f} | {base / ep:.1f}x | "
            f"{statistics.median(r['cpu_seconds']):.0f} | "
            f"{statistics.median(r['best_val_loss']):.4f} | "
            f"{100 * statistics.median(r['test_accuracy']):.2f}% | "
            f"{100 * statistics.median(r['best_test_accuracy']):.2f}% | "
            + (
                f"{statistics.median(r['top5_stopped']):.1f} |"
                if algorithm == "random"
                else "n/a |"
            )
        )
    return "\n".join(lines)


# tunewire's rule and the Optuna pruner beside it (MedianPruner compares values at the
# step; it has no running-average variant).
COST_RULES: dict[str, tuple[dict[str, Any], str]] = {
    "median, values at the step": (
        {"rule": "median", "min_completed_trials": 5, "use_step_values": True},
        "median",
    ),
    "median, running averages": ({"rule": "median", "min_completed_trials": 5}, "median"),
    "successive halving": ({"rule": "successive_halving", "min_resource": 1}, "halving"),
}


def _tunewire_report_ms(n: int, steps: int, policy: dict[str, Any], tmp: Path) -> list[float]:
    """Report latencies of a new trial in a study with n completed trials of `steps`
    reports each. The history is written straight into the database file (the same rows
    the service writes), so setting up 1,000 trials takes seconds, not minutes."""
    import json
    import sqlite3

    from benchmarks.common import free_port, start_server_process
    from tunewire.client import TuningClient
    from tunewire.client.spec import spec_from_dict
    from tunewire.server.api.convert import spec_from_pb
    from tunewire.server.service.access import StudyAccess
    from tunewire.server.service.studies import StudyService
    from tunewire.server.storage.sql import SqlStorage

    db = tmp / f"cost-{uuid.uuid4().hex[:8]}.db"
    storage = SqlStorage(f"sqlite:///{db}")
    spec = {
        "parameters": [{"name": "x", "type": "float", "min": 0.0, "max": 1.0}],
        "metrics": [{"name": "loss", "goal": "minimize"}],
        "algorithm": "random",
        "early_stopping": policy,
    }
    StudyService(StudyAccess(storage)).create("cost", spec_from_pb(spec_from_dict(spec)))
    storage.dispose()
    now = time.time()
    con = sqlite3.connect(db)
    with con:
        (sid,) = con.execute("SELECT id FROM studies").fetchone()
        con.executemany(
            "INSERT INTO trials (study_id, trial_id, params_json, state, source, created_at,"
            " ended_at, final_metrics_json) VALUES (?, ?, ?, 'completed', 'algorithm', ?, ?, ?)",
            [
                (
                    sid,
                    i,
                    json.dumps({"x": i / n}),
                    now,
                    now,
                    json.dumps({"loss": 1 / steps + i / n}),
                )
                for i in range(1, n + 1)
            ],
        )
        con.executemany(
            "INSERT INTO measurements (study_id, trial_id, step, metrics_json, created_at,"
            " value) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (sid, i, s, json.dumps({"loss": 1 / (s + 1) + i / n}), now, 1 / (s + 1) + i / n)
                for i in range(1, n + 1)
                for s in range(steps)
            ],
        )
        con.execute("UPDATE studies SET next_trial_id = ?", (n + 1,))
    con.close()
    port = free_port()
    server = start_server_process(f"sqlite:///{db}", port, tmp / f"cost-{port}.log", threads=4)
    try:
        with TuningClient(f"127.0.0.1:{port}") as client:
            (trial,) = client.suggest("cost", "bench")
            out = []
            for step in range(steps):
                t0 = time.perf_counter()
                stop = trial.report(step, {"loss": 0.0})  # the best curve: never stopped
                out.append((time.perf_counter() - t0) * 1e3)
                assert not stop
            trial.complete({"loss": 0.0})
        return out
    finally:
        server.terminate()
        server.wait(10)


def _optuna_report_ms(n: int, steps: int, rule: str, tmp: Path) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        if rule == "median"
        else optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    )
    storage = f"sqlite:///{tmp / f'optuna-{uuid.uuid4().hex[:8]}.db'}"
    study = optuna.create_study(storage=storage, direction="minimize", pruner=pruner)
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "x": optuna.distributions.FloatDistribution(0.0, 1.0)
    }
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"x": i / n},
                distributions=dist,
                value=1 / steps + i / n,
                intermediate_values={s: 1 / (s + 1) + i / n for s in range(steps)},
            )
            for i in range(1, n + 1)
        ]
    )
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    out = []
    for step in range(steps):
        t0 = time.perf_counter()
        trial.report(0.0, step)
        stop = trial.should_prune()
        out.append((time.perf_counter() - t0) * 1e3)
        assert not stop
    study.tell(trial, 0.0)
    return out


def cost(sizes: tuple[int, ...], steps: int) -> str:
    """Report latency (ms) of a trial running beside n completed trials."""
    try:
        import optuna  # noqa: F401

        have_optuna = True
    except ImportError:
        have_optuna = False
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in sizes:
            for label, (policy, peer) in COST_RULES.items():
                ours = _tunewire_report_ms(n, steps, policy, tmp)
                row = f"| {n:,} | {label} | {_lat(ours)} |"
                if have_optuna:
                    theirs = _optuna_report_ms(n, steps, peer, tmp)
                    ratio = statistics.median(ours) / statistics.median(theirs)
                    row += f" {_lat(theirs)} | {ratio:.2f} |"
                else:
                    row += " not installed | — |"
                rows.append(row)
                print(row, flush=True)
    return (
        f"Report latency in a large study (ms; a new trial's {steps} reports with stop "
        f"decisions, beside n completed trials of {steps} reports; SQLite both sides; "
        "median / p90 / max)\n\n"
        "| completed trials | rule | tunewire through gRPC | Optuna pruner, RDBStorage "
        "| median ratio |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )


def _lat(ms: list[float]) -> str:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(ordered):.1f} / {p90:.1f} / {ordered[-1]:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("synthetic", "real", "cost", "all"), default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tables = []
    started = time.time()
    if args.part in ("synthetic", "all"):
        text = synthetic(seeds=2 if args.quick else 20, n=20 if args.quick else 60, steps=27)
        print(text, flush=True)
        tables.append(text)
    if args.part in ("real", "all"):
        text = real(
            seeds=1 if args.quick else 3,
            trials=4 if args.quick else 30,
            epochs=3 if args.quick else 50,
        )
        print(text, flush=True)
        tables.append(text)
    if args.part in ("cost", "all"):
        text = cost(sizes=(100,) if args.quick else (100, 300, 1000), steps=50)
        print(text, flush=True)
        tables.append(text)
    if not args.no_record:
        command = (
            "python -m benchmarks.bench_early_stopping"
            + (f" --part {args.part}" if args.part != "all" else "")
            + (" --quick" if args.quick else "")
        )
        append_results(
            "bench_early_stopping",
            command,
            "\n\n".join(tables),
            f"{time.time() - started:.0f} s wall"
            + (f"; plot: benchmarks/{PLOT.name}" if args.part in ("synthetic", "all") else ""),
            packages=("torch", "optuna"),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
