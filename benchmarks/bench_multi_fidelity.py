"""Which tuner finds the best network for the least training time, when trials report every
epoch and may be stopped?

    python -m benchmarks.bench_multi_fidelity            # the full run
    python -m benchmarks.bench_multi_fidelity --quick    # a smoke run

Replays the learning-curve tables recorded from the trainer's tasks
(benchmarks/data/curves/, written by benchmarks/record_curves.py) on a simulated clock
(benchmarks/replay.py) with 1 and 4 asynchronous workers: tunewire's arms through a real
`tunewire serve` (gp without stopping, gp and gp_mf with the task's default median rule
and with ASHA, random with ASHA) and Optuna's TPE with HyperbandPruner and with
SuccessiveHalvingPruner in this process, all on the same tables and clock. The budget is
simulated wall-clock: --budget-trainings times the median configuration's full training.

Reports, per task, arm and worker count (medians over seeds [IQR]): the regret of the
incumbent at the end (the trial with the best validation loss, scored by its configuration's
test error), the mean regret over the budget (anytime), the simulated time to reach the
no-stopping GP's final median regret, epochs trained and training seconds. Appends to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.curves import CURVES_DIR, CurveTable, curve_file, load_curves
from benchmarks.replay import (
    CurveSession,
    OptunaCurveSession,
    Replay,
    TunewireCurveSession,
    regret_area,
    replay,
    time_to_reach,
)
from benchmarks.simclock import fmt

OUT = Path(__file__).resolve().parent / "out"
REFERENCE_ARM = "tunewire gp (no stopping)"
ASHA = {"rule": "successive_halving", "min_resource": 1, "reduction_factor": 3}


def _default_median_rule(table: CurveTable) -> dict[str, Any]:
    """The early stopping the task's default study spec asks for (a user's first study)."""
    from tunewire.trainer.tasks import BUILTIN_TASKS

    rule: dict[str, Any] = BUILTIN_TASKS[table.task].default_spec()["early_stopping"]
    return rule


# arm -> (client, table, seed, workers) -> session
ARMS: dict[str, Callable[[Any, CurveTable, int, int], CurveSession]] = {
    REFERENCE_ARM: lambda c, t, s, k: TunewireCurveSession(c, t, algorithm="gp", seed=s),
    "tunewire gp + median": lambda c, t, s, k: TunewireCurveSession(
        c, t, algorithm="gp", seed=s, early_stopping=_default_median_rule(t)
    ),
    "tunewire gp + ASHA": lambda c, t, s, k: TunewireCurveSession(
        c, t, algorithm="gp", seed=s, early_stopping=dict(ASHA, max_resource=t.max_epochs)
    ),
    "tunewire gp_mf + median": lambda c, t, s, k: TunewireCurveSession(
        c, t, algorithm="gp_mf", seed=s, early_stopping=_default_median_rule(t)
    ),
    "tunewire gp_mf + ASHA": lambda c, t, s, k: TunewireCurveSession(
        c, t, algorithm="gp_mf", seed=s, early_stopping=dict(ASHA, max_resource=t.max_epochs)
    ),
    "tunewire random + ASHA": lambda c, t, s, k: TunewireCurveSession(
        c, t, algorithm="random", seed=s, early_stopping=dict(ASHA, max_resource=t.max_epochs)
    ),
    "Optuna TPE + Hyperband": lambda c, t, s, k: OptunaCurveSession(
        t, pruner="hyperband", seed=s, workers=k
    ),
    "Optuna TPE + SuccessiveHalving": lambda c, t, s, k: OptunaCurveSession(
        t, pruner="successive_halving", seed=s, workers=k
    ),
}
OPTUNA_ARMS = {a for a in ARMS if a.startswith("Optuna")}


def budget_seconds(table: CurveTable, trainings: float) -> float:
    """`trainings` full trainings of the median configuration, one after another."""
    per_run = table.pretrain_seconds + np.nansum(table.curves["epoch_seconds"], axis=2)
    return float(trainings * np.nanmedian(per_run.mean(axis=1)))


def iqr(values: Sequence[float]) -> str:
    q1, q3 = np.percentile(values, [25, 75])
    return f"[{fmt(float(q1))}, {fmt(float(q3))}]"


def compare(
    client: Any,
    tables: Sequence[CurveTable],
    arms: Sequence[str],
    workers: Sequence[int],
    seeds: Sequence[int],
    trainings: float,
) -> str:
    lines = [
        "| task | arm | workers | final regret [IQR] | mean regret over the budget | "
        f"time to reach {REFERENCE_ARM}'s final (s) | epochs trained | training s | trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for table in tables:
        budget = budget_seconds(table, trainings)
        for k in workers:
            runs: dict[str, list[Replay]] = {}
            for arm in arms:
                runs[arm] = [
                    replay(
                        ARMS[arm](client, table, seed, k),
                        table,
                        seed=seed,
                        workers=k,
                        budget_seconds=budget,
                    )
                    for seed in seeds
                ]
                print(
                    f"{table.task} {arm} {k} workers: final median regret "
                    f"{fmt(statistics.median(r.final_regret for r in runs[arm]))}",
                    flush=True,
                )
            reference = runs.get(REFERENCE_ARM)
            target = statistics.median(r.final_regret for r in reference) if reference else None
            for arm, arm_runs in runs.items():
                finals = [r.final_regret for r in arm_runs]
                reach = time_to_reach(arm_runs, target) if target is not None else None
                lines.append(
                    f"| {table.task} | {arm} | {k} | {fmt(statistics.median(finals))} "
                    f"{iqr(finals)} | {fmt(regret_area(arm_runs, budget))} | "
                    f"{fmt(reach)} of {budget:.0f} | "
                    f"{statistics.median(r.epochs_trained for r in arm_runs):.0f} | "
                    f"{statistics.median(r.busy_seconds for r in arm_runs):.0f} | "
                    f"{statistics.median(len(r.trials) for r in arm_runs):.0f} |"
                )
    return "\n".join(lines)


def _asha_history(table: CurveTable, n: int, seed: int) -> tuple[list[Any], list[Any], list[Any]]:
    """n finished trials of the table in successive halving's shape (of every 9, 6 stopped
    at the first rung, 2 at the second, 1 trained to the end), as the algorithms see them,
    and 3 running trials with a report each (4 workers)."""
    from tunewire.server.algorithms import Observation
    from tunewire.server.domain.study import TrialState

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(table), n + 3, replace=n + 3 > len(table))  # tiny test tables
    pattern = (1, 1, 1, 1, 1, 1, 3, 3, table.max_epochs)
    observations = []
    for i, row in enumerate(rows[:n]):
        values = table.curves["val_loss"][row, 0]
        last = min(pattern[i % len(pattern)], int(np.sum(np.isfinite(values))))
        curve = tuple((e + 1, float(values[e])) for e in range(last))
        if not curve:
            observations.append(Observation(i + 1, table.params[row], TrialState.INFEASIBLE, None))
            continue
        state = TrialState.COMPLETED if last == table.max_epochs else TrialState.STOPPED_EARLY
        best = min(v for _, v in curve)
        observations.append(Observation(i + 1, table.params[row], state, {"val_loss": best}, curve))
    pending = [table.params[row] for row in rows[n:]]
    pending_curves = [((1, float(table.curves["val_loss"][row, 0, 0])),) for row in rows[n:]]
    return observations, pending, pending_curves


def suggestion_latency(tables: Sequence[CurveTable], sizes: Sequence[int], repeats: int) -> str:
    """Seconds per suggestion of gp and gp_mf (in this process, one thread) on the same
    histories: finished trials in successive halving's shape plus 3 running ones."""
    from tunewire.server.algorithms import SuggestRequest, get_algorithm
    from tunewire.server.algorithms.encoding import ModelEncoding
    from tunewire.server.algorithms.gp.fidelity import fidelity_rows
    from tunewire.server.domain.study import StudySpec

    lines = [
        "| task | finished trials | gp p50 (s) | gp_mf p50 (s) | gp_mf / gp | gp_mf model rows |",
        "|---|---|---|---|---|---|",
    ]
    for table in tables:
        for n in sizes:
            times: dict[str, list[float]] = {"gp": [], "gp_mf": []}
            rows = 0
            for rep in range(repeats):
                observations, pending, pending_curves = _asha_history(table, n, rep)
                for name in times:
                    spec = StudySpec.from_dict(
                        {
                            "parameters": table.parameters,
                            "metrics": [{"name": "val_loss", "goal": "minimize"}],
                            "algorithm": name,
                            "seed": rep,
                            "early_stopping": dict(ASHA, max_resource=table.max_epochs),
                        }
                    )
                    request = SuggestRequest(spec, observations, pending, 1, n + 3, pending_curves)
                    start = time.perf_counter()
                    get_algorithm(name).suggest(request)
                    times[name].append(time.perf_counter() - start)
                    if name == "gp_mf":
                        rows = len(fidelity_rows(spec, ModelEncoding(spec.space), request, 0).x)
            gp, mf = statistics.median(times["gp"]), statistics.median(times["gp_mf"])
            lines.append(f"| {table.task} | {n} | {gp:.3f} | {mf:.3f} | {mf / gp:.2f} | {rows} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


@dataclass
class RealStudy:
    """One study of real training: wall seconds from its creation until it ended (or was
    ended), the best validation loss of a trial that finished, when it was first reached
    (None: not reached), epochs trained and trials."""

    wall: float
    best: float
    reached_at: float | None
    epochs: int
    trials: int


def _real_study(
    target: str,
    name: str,
    spec: dict[str, Any],
    seed: int,
    *,
    deadline: float | None = None,
    stop_at: float | None = None,
) -> RealStudy:
    """Creates the study and runs two trainer processes (`tunewire train --devices cpu*2`)
    on it until the study is done, or its best validation loss is <= `stop_at`, or
    `deadline` wall seconds have passed."""
    from tunewire.client import TuningClient

    client = TuningClient(target, timeout=60)
    client.create_study(name, spec)
    start = time.time()
    trainers = subprocess.Popen(
        [sys.executable, "-m", "tunewire.trainer", "--server", target, "--study", name]
        + ["--task", "digits-mlp", "--no-create-study", "--devices", "cpu*2"]
        + ["--seed", str(seed), "--threads", "1", "--progress", "off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def finished() -> list[Any]:
        return [
            t
            for t in client.list_trials(name, ["completed", "stopped_early"], measurements=False)
            if t.final_metrics and "val_loss" in t.final_metrics
        ]

    reached_at: float | None = None
    try:
        while trainers.poll() is None:
            time.sleep(1.0)
            done = finished()
            if stop_at is not None and any(t.final_metrics["val_loss"] <= stop_at for t in done):
                break
            if deadline is not None and time.time() - start > deadline:
                break
    finally:
        if trainers.poll() is None:
            os.killpg(trainers.pid, signal.SIGTERM)
            try:
                trainers.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(trainers.pid, signal.SIGKILL)
                trainers.wait()
    wall = time.time() - start
    done = finished()
    client.close()
    best = min(t.final_metrics["val_loss"] for t in done)
    if stop_at is not None:
        hits = [t.end_time - start for t in done if t.final_metrics["val_loss"] <= stop_at]
        reached_at = min(hits) if hits else None
    epochs = sum(int(t.final_metrics.get("epochs_trained", 0)) for t in done)
    return RealStudy(wall, best, reached_at, epochs, len(done))


def real_training(seeds: Sequence[int], trials: int) -> str:
    """Real training of the digits MLP with two trainer processes: the GP without stopping
    runs `trials` trials; then gp_mf with successive halving, with up to 4x the trials and
    the GP's wall-clock, and the time it takes to reach the GP's best validation loss."""
    from benchmarks.common import free_port, remove_sqlite_file, start_server_process
    from tunewire.trainer.tasks import BUILTIN_TASKS

    task = BUILTIN_TASKS["digits-mlp"]
    base = task.default_spec()
    lines = [
        f"Real training: digits-mlp, two trainer processes (`--devices cpu*2`, one torch thread "
        f"each), gp without stopping for {trials} trials against gp_mf + ASHA (min 1 epoch, "
        f"factor 3, max {task.defaults.max_epochs}) given up to {4 * trials} trials and gp's "
        "wall-clock.",
        "",
        "| seed | gp wall s | gp best val loss | gp epochs | gp_mf reached it at s | ratio | "
        "gp_mf best val loss | gp_mf epochs | gp_mf trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratios: list[float] = []
    for seed in seeds:
        port = free_port()
        OUT.mkdir(parents=True, exist_ok=True)
        db = OUT / f"bench_multi_fidelity_real_{port}.db"
        server = start_server_process(
            f"sqlite:///{db}", port, OUT / "bench_multi_fidelity_real.log", threads=8,
            torch_threads=1,
        )  # fmt: skip
        target = f"127.0.0.1:{port}"
        try:
            gp = _real_study(
                target,
                f"gp-{seed}",
                dict(
                    base,
                    algorithm="gp",
                    seed=seed,
                    max_trials=trials,
                    early_stopping={"rule": "none"},
                ),
                seed,
            )
            asha = dict(ASHA, max_resource=task.defaults.max_epochs)
            mf = _real_study(
                target,
                f"gp_mf-{seed}",
                dict(
                    base, algorithm="gp_mf", seed=seed, max_trials=4 * trials, early_stopping=asha
                ),
                seed,
                deadline=gp.wall,
                stop_at=gp.best,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            remove_sqlite_file(db)
        ratio = (mf.reached_at / gp.wall) if mf.reached_at is not None else float("inf")
        ratios.append(ratio)
        lines.append(
            f"| {seed} | {gp.wall:.0f} | {gp.best:.4f} | {gp.epochs} | "
            + (f"{mf.reached_at:.0f}" if mf.reached_at is not None else "not reached")
            + f" | {ratio:.2f} | {mf.best:.4f} | {mf.epochs} | {mf.trials} |"
        )
        print(lines[-1], flush=True)
    lines.append(f"| median | | | | | {statistics.median(ratios):.2f} | | | |")
    return "\n".join(lines)


def _report(
    section: str,
    text: str,
    started: float,
    argv: list[str] | None,
    record: bool,
    notes: str,
    packages: tuple[str, ...],
) -> None:
    """Prints a part's table with its wall time and, if `record`, appends it to RESULTS.md
    with the command that produced it."""
    from benchmarks.common import append_results

    print(f"\n{text}\n\n({time.perf_counter() - started:.0f} s)")
    if record:
        given = argv if argv is not None else sys.argv[1:]
        command = " ".join(["python -m benchmarks.bench_multi_fidelity", shlex.join(given)])
        append_results(section, command.strip(), text, notes, packages=packages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--tasks", default="", help="default: every recorded table")
    parser.add_argument("--curves", type=Path, default=CURVES_DIR, help="folder of the tables")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget-trainings", type=float, default=30.0)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--latency",
        action="store_true",
        help="instead of the replay: seconds per suggestion of gp and gp_mf on the same histories",
    )
    parser.add_argument(
        "--real",
        type=int,
        default=0,
        metavar="TRIALS",
        help="instead of the replay: real training of digits-mlp, gp with TRIALS trials "
        "against gp_mf + ASHA (seeds: --seeds)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from benchmarks.common import (
        free_port,
        remove_sqlite_file,
        start_server_process,
    )
    from tunewire.client import TuningClient

    if args.real:  # real training needs no recorded tables
        started = time.perf_counter()
        text = real_training(range(args.seeds), args.real)
        _report(
            "bench_multi_fidelity --real",
            text,
            started,
            argv,
            not args.no_record,
            "wall-clock on this 2-core machine; the server shares the cores",
            ("torch",),
        )
        return 0
    names = [t for t in args.tasks.split(",") if t] or sorted(
        p.stem for p in args.curves.glob("*.npz")
    )
    tables = [load_curves(n, args.curves) for n in names if curve_file(n, args.curves).exists()]
    if not tables:
        print(f"no curve tables under {args.curves}: run benchmarks.record_curves", file=sys.stderr)
        return 1
    if args.latency:
        sizes = (12, 24) if args.quick else (30, 90, 270)
        started = time.perf_counter()
        text = suggestion_latency(
            tables[:1] if args.quick else tables, sizes, 2 if args.quick else 5
        )
        _report(
            "bench_multi_fidelity --latency",
            text,
            started,
            argv,
            not args.no_record,
            "medians over 5 histories; one thread, in the benchmark's process",
            ("torch",),
        )
        return 0
    arms = [a for a in args.arms.split(",") if a]
    missing = ""
    try:
        import optuna  # noqa: F401
    except ImportError:
        arms = [a for a in arms if a not in OPTUNA_ARMS]
        missing = " Optuna is not installed: its arms were skipped (`pip install -e .[bench]`)."
    seeds = list(range(2 if args.quick else args.seeds))
    workers = [int(k) for k in args.workers.split(",")]
    trainings = args.budget_trainings
    if args.quick:
        tables, workers, trainings = tables[:1], workers[-1:], min(trainings, 6.0)
    port = free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"bench_multi_fidelity_{port}.db"
    server = start_server_process(
        f"sqlite:///{db}",
        port,
        OUT / "bench_multi_fidelity_server.log",
        threads=8,
        torch_threads=1,
    )
    client = TuningClient(f"127.0.0.1:{port}", timeout=600)
    started = time.perf_counter()
    try:
        text = compare(client, tables, arms, workers, seeds, trainings)
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        remove_sqlite_file(db)  # nothing reads it afterwards
    recorded = "; ".join(
        f"{t.task}: {len(t)} configurations x {len(t.seeds)} seeds, "
        f"{t.meta.get('recording_seconds', '?')} s on {t.meta['sessions'][-1]['device']}"
        for t in tables
    )
    _report(
        "bench_multi_fidelity",
        text,
        started,
        argv,
        not args.no_record,
        f"{len(seeds)} seeds; budget {trainings:g} median full trainings of simulated "
        f"time; tables: {recorded}.{missing}",
        ("optuna", "torch"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
