"""Which tuner finds the best network for the least training time, when trials report every
epoch and may be stopped?

    python -m benchmarks.bench_multi_fidelity            # the full run
    python -m benchmarks.bench_multi_fidelity --quick    # a smoke run

Replays the learning-curve tables recorded from the trainer's tasks
(benchmarks/data/curves/, written by benchmarks/record_curves.py) on a simulated clock
(benchmarks/replay.py) with 1 and 4 asynchronous workers: tunewire's arms through a real
`tunewire serve` (gp without stopping, gp with the task's default median rule, gp with
ASHA, random with ASHA) and Optuna's TPE with HyperbandPruner and with
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
import statistics
import sys
import time
from collections.abc import Callable, Sequence
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
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from benchmarks.common import (
        append_results,
        free_port,
        remove_sqlite_file,
        start_server_process,
    )
    from tunewire.client import TuningClient

    names = [t for t in args.tasks.split(",") if t] or sorted(
        p.stem for p in args.curves.glob("*.npz")
    )
    tables = [load_curves(n, args.curves) for n in names if curve_file(n, args.curves).exists()]
    if not tables:
        print(f"no curve tables under {args.curves}: run benchmarks.record_curves", file=sys.stderr)
        return 1
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
    print(f"\n{text}\n\n({time.perf_counter() - started:.0f} s)")
    if not args.no_record:
        given = argv if argv is not None else sys.argv[1:]
        command = " ".join(["python -m benchmarks.bench_multi_fidelity", shlex.join(given)])
        recorded = "; ".join(
            f"{t.task}: {len(t)} configurations x {len(t.seeds)} seeds, "
            f"{t.meta.get('recording_seconds', '?')} s on {t.meta['sessions'][-1]['device']}"
            for t in tables
        )
        append_results(
            "bench_multi_fidelity",
            command.strip(),
            text,
            f"{len(seeds)} seeds; budget {trainings:g} median full trainings of simulated "
            f"time; tables: {recorded}.{missing}",
            packages=("optuna", "torch"),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
