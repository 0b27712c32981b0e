"""How does tunewire's GP serve many training machines at once?

    python -m benchmarks.bench_many_workers            # the full run
    python -m benchmarks.bench_many_workers --quick    # a smoke run (a few minutes)

Three questions, each through a real `tunewire serve` (SQLite) and the Python client:

1. Latency: one suggestion of a Hartmann6 study with 30 and 300 completed trials and 0 to
   256 trials held by other workers: p50 and p95 at the client, and the server's CPU
   seconds per suggestion.
2. Many workers on a simulated clock (benchmarks/simclock.py): K asynchronous workers,
   each evaluation costing a random duration (0.5-1.5 time units, the same sequence for
   every arm), so workers finish out of order. Regret at equal evaluations, and how much
   sooner in simulated wall-clock K workers reach one worker's final median regret;
   beside Optuna GPSampler (which models running trials), Optuna TPE with
   constant_liar, and random search, all on the same clock.
3. Tabular tasks (benchmarks/tabular.py: HPOLib's four and NAS-Bench-201's three tables;
   HPOBench's MLP tables are held out): median and 90th-percentile regret after 40
   evaluations with one worker.

Prints tables, writes benchmarks/bench_many_workers.png, appends to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_optimizer import PROBLEMS
from benchmarks.simclock import (
    ARMS,
    Run,
    Task,
    finishing_times,
    fmt,
    median_at_evaluations,
    run_clock,
    synthetic,
    tabular,
    time_to_reach,
)
from benchmarks.tabular import development_tasks

OUT = Path(__file__).resolve().parent / "out"
PLOT = Path(__file__).resolve().parent / "bench_many_workers.png"


# -- 1. latency -------------------------------------------------------------------------------
def latency(client: Any, pid: int, completed: Sequence[int], running: Sequence[int]) -> str:
    """One suggestion with `running` trials held by other workers, after `completed`
    results (loaded with AddTrial), timed at the client; the trial suggested is completed,
    so each repetition adds one result."""
    from benchmarks.common import cpu_seconds

    problem = PROBLEMS[1]
    lines = [
        "| completed | running | suggestion p50 (s) | p95 (s) | server CPU s / suggestion |",
        "|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for n_done in completed:
        for n_running in running:
            study = f"latency-{n_done}-{n_running}-{time.time_ns()}"
            client.create_study(
                study,
                {
                    "parameters": problem.parameters,
                    "metrics": [{"name": "loss", "goal": "minimize"}],
                    "seed": 1,
                },
            )
            for _ in range(n_done):
                params = {f"x{i}": float(v) for i, v in enumerate(rng.random(6))}
                client.add_trial(study, params, {"loss": problem.evaluate(params)})
            # Running trials: queued configurations handed to other workers (no model).
            for w in range(n_running):
                params = {f"x{i}": float(v) for i, v in enumerate(rng.random(6))}
                client.add_trial(study, params)
                client.suggest(study, worker_id=f"holder{w}")
            times, cpu = [], cpu_seconds(pid)
            repeats = 7
            for r in range(repeats + 1):
                start = time.perf_counter()
                trial = client.suggest(study, worker_id=f"asker{r}")[0]
                if r:  # the first suggestion warms the study's caches up
                    times.append(time.perf_counter() - start)
                else:
                    cpu = cpu_seconds(pid)
                trial.complete({"loss": problem.evaluate(trial.params)})
            per = (cpu_seconds(pid) - cpu) / repeats
            lines.append(
                f"| {n_done} | {n_running} | {statistics.median(times):.3f} | "
                f"{float(np.percentile(times, 95)):.3f} | {per:.3f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


# -- 2. many workers --------------------------------------------------------------------------
def many_workers(
    client: Any,
    tasks: Sequence[Task],
    workers: Sequence[int],
    arms: Sequence[str],
    seeds: Sequence[int],
    budget: int,
) -> tuple[str, dict[str, dict[str, dict[int, list[Run]]]]]:
    """Every arm with each worker count on each task; K workers get budget * K^(1/2)
    evaluations, enough to reach one worker's regret at the budget if they can."""
    results: dict[str, dict[str, dict[int, list[Run]]]] = {}
    for task in tasks:
        for arm in arms:
            for k in workers:
                n = evaluations_for(k, budget)
                runs = []
                for seed in seeds:
                    session = ARMS[arm](client, task, seed, k)
                    runs.append(run_clock(session, task, seed, k, n))
                results.setdefault(task.name, {}).setdefault(arm, {})[k] = runs
                print(
                    f"{task.name} {arm} {k} workers: median regret at {budget} "
                    f"evaluations {fmt(median_at_evaluations(runs, budget))}",
                    flush=True,
                )
    lines = [
        f"| task | arm | workers | median regret at {budget} evaluations | at the end "
        "(evaluations) | simulated time to one worker's final median | speed-up vs 1 worker "
        "| latency p50 (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for arm in arms:
            by_k = results[task.name][arm]
            target = median_at_evaluations(by_k[1], budget) if 1 in by_k else None
            t1 = time_to_reach(by_k[1], target) if target is not None else None
            for k, runs in by_k.items():
                tk = time_to_reach(runs, target) if target is not None else None
                speed = f"{t1 / tk:.1f}x" if t1 and tk else "—"
                lat = statistics.median(x for r in runs for x in r.latencies[8:] or [0.0])
                lines.append(
                    f"| {task.name} | {arm} | {k} | {fmt(median_at_evaluations(runs, budget))} "
                    f"| {fmt(median_at_evaluations(runs, len(runs[0].regrets)))} "
                    f"({len(runs[0].regrets)}) | {fmt(tk)} | {speed} | {lat:.3f} |"
                )
    return "\n".join(lines), results


def common_target_table(
    results: dict[str, dict[str, dict[int, list[Run]]]], budget: int, ours: str = "tunewire gp"
) -> str:
    """Simulated time for every arm and worker count to reach one regret per task: the best
    peer's one-worker median at the budget. Each arm's own speed-up above is measured
    against its own one-worker result, which flatters an arm that is weak alone; this
    table puts every arm on the same finish line."""
    ks = sorted({k for arms in results.values() for by_k in arms.values() for k in by_k})
    lines = [
        "| task | target | arm | " + " | ".join(f"{k} workers" for k in ks) + " |",
        "|---|---|---|" + "---|" * len(ks),
    ]
    for task, arms in results.items():
        peers = [
            median_at_evaluations(by_k[1], budget)
            for arm, by_k in arms.items()
            if arm != ours and 1 in by_k
        ]
        if not peers:
            continue
        target = min(peers)
        for arm, by_k in arms.items():
            cells = [fmt(time_to_reach(by_k[k], target)) if k in by_k else "—" for k in ks]
            lines.append(f"| {task} | {fmt(target)} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluations_for(k: int, budget: int) -> int:
    """Evaluations a run of K workers gets: budget * K^(1/2), at least twice the budget."""
    return budget if k == 1 else int(round(budget * max(2.0, k**0.5)))


def finish_line_table(
    results: dict[str, dict[str, dict[int, list[Run]]]],
    seeds: int,
    steps: Sequence[int] = (5, 10, 20, 30, 40),
) -> str:
    """Speed-up of K workers against one to one worker's median regret after m
    evaluations, beside the ceiling of the simulated clock: the same ratio for an
    optimiser that loses nothing by running in parallel (`finishing_times`)."""
    ks = sorted({k for arms in results.values() for by_k in arms.values() for k in by_k} - {1})
    lines = [
        "| task | arm | " + " | ".join(f"m = {m}" for m in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    budget = max(steps)
    # Each seed's finishing times, once per worker count (1 included).
    finished = {
        k: [finishing_times(s, k, evaluations_for(k, budget)) for s in range(seeds)]
        for k in [1, *ks]
    }

    def ceiling(m: int, k: int) -> float:
        one = statistics.median(times[m - 1] for times in finished[1])
        return one / statistics.median(times[m - 1] for times in finished[k])

    lines.append(
        "| (any) | ceiling, "
        + " / ".join(str(k) for k in ks)
        + " workers | "
        + " | ".join(" / ".join(f"{ceiling(m, k):.1f}x" for k in ks) for m in steps)
        + " |"
    )
    for task, arms in results.items():
        for arm, by_k in arms.items():
            if 1 not in by_k:
                continue
            cells = []
            for m in steps:
                target = median_at_evaluations(by_k[1], m)
                t1 = time_to_reach(by_k[1], target)
                ratios = []
                for k in ks:
                    tk = time_to_reach(by_k[k], target) if k in by_k else None
                    ratios.append(f"{t1 / tk:.1f}x" if t1 and tk else "—")
                cells.append(" / ".join(ratios))
            lines.append(f"| {task} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_runs(path: Path) -> dict[str, dict[str, dict[int, list[Run]]]]:
    """What `dump` wrote."""
    data = json.loads(path.read_text())
    return {
        task: {
            arm: {int(k): [Run(**r) for r in runs] for k, runs in by_k.items()}
            for arm, by_k in arms.items()
        }
        for task, arms in data.items()
    }


def dump(results: dict[str, dict[str, dict[int, list[Run]]]], path: Path) -> None:
    """Every run's finishing times, regrets and latencies, for analysis after the run."""
    data = {
        task: {
            arm: {
                str(k): [
                    {"times": r.times, "regrets": r.regrets, "latencies": r.latencies} for r in runs
                ]
                for k, runs in by_k.items()
            }
            for arm, by_k in arms.items()
        }
        for task, arms in results.items()
    }
    path.write_text(json.dumps(data))


# -- 3. tabular tasks -------------------------------------------------------------------------
def tabular_table(results: dict[str, dict[str, dict[int, list[Run]]]], budget: int) -> str:
    lines = [
        f"| task | arm | median regret at {budget} | 90th percentile | best median? |",
        "|---|---|---|---|---|",
    ]
    for task, arms in results.items():
        medians = {a: median_at_evaluations(r[1], budget) for a, r in arms.items()}
        best = min(medians.values())
        for arm, by_k in arms.items():
            p90 = float(np.percentile([r.best()[budget - 1] for r in by_k[1]], 90))
            mark = "yes" if medians[arm] == best else ""
            lines.append(f"| {task} | {arm} | {fmt(medians[arm])} | {fmt(p90)} | {mark} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[int, list[Run]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for arm, by_k in results[name].items():
            for k, runs in by_k.items():
                style = "-" if arm == "tunewire gp" else ":"
                label = f"{arm}, {k} workers"
                n = min(len(r.regrets) for r in runs)
                axes[row][0].plot(
                    range(1, n + 1),
                    np.median([r.best()[:n] for r in runs], axis=0),
                    style,
                    label=label,
                )
                grid = np.linspace(0, max(r.times[-1] for r in runs), 200)
                axes[row][1].plot(
                    grid,
                    [np.median([r.best_at_time(t) for r in runs]) for t in grid],
                    style,
                    label=label,
                )
        for col, xlabel in enumerate(("evaluations", "simulated time (evaluation units)")):
            axes[row][col].set_yscale("log")
            axes[row][col].set_xlabel(xlabel)
            axes[row][col].set_ylabel(f"{name}: median regret")
    axes[0][1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--sections", default="latency,workers,tabular")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default="branin,hartmann6,mixed,conditional")
    parser.add_argument("--workers", default="1,4,16,64")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--finish-lines",
        metavar="RUNS_JSON",
        help="only print the speed-up by finish line of a workers run's dump "
        "(benchmarks/out/bench_many_workers_runs.json)",
    )
    args = parser.parse_args(argv)
    if args.finish_lines:
        runs = load_runs(Path(args.finish_lines))
        n_seeds = min(
            len(r) for arms in runs.values() for by_k in arms.values() for r in by_k.values()
        )
        print(finish_line_table(runs, n_seeds))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    logging.getLogger("optuna").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    from benchmarks.common import (
        append_results,
        free_port,
        remove_sqlite_file,
        start_server_process,
    )
    from tunewire.client import TuningClient

    sections = set(args.sections.split(","))
    seeds = list(range(2 if args.quick else args.seeds))
    workers = [int(k) for k in args.workers.split(",")]
    arms = [a for a in args.arms.split(",") if a]
    problems = [p for p in PROBLEMS if p.name in args.problems.split(",")]
    tables = list(development_tasks())
    completed, running = [30, 300], [0, 8, 32, 64, 128, 256]
    if args.quick:
        workers, problems, tables = [1, 4], problems[:1], tables[:1]
        completed, running = [30], [0, 32]
    port = free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    server = start_server_process(
        f"sqlite:///{OUT / f'bench_many_workers_{port}.db'}",
        port,
        OUT / "bench_many_workers_server.log",
        threads=8,
        torch_threads=1,
    )
    client = TuningClient(f"127.0.0.1:{port}", timeout=600)
    parts, started = [], time.perf_counter()
    try:
        if "latency" in sections:
            parts.append(
                "Latency (Hartmann6):\n\n" + latency(client, server.pid, completed, running)
            )
        results: dict[str, Any] = {}
        if "workers" in sections:
            text, results = many_workers(
                client, [synthetic(p) for p in problems], workers, arms, seeds, args.budget
            )
            parts.append("Many workers, simulated clock:\n\n" + text)
            parts.append(
                "Speed-up of K workers to one worker's median regret after m evaluations "
                "(K = " + " / ".join(str(k) for k in workers if k != 1) + "), and the "
                "simulated clock's ceiling:\n\n" + finish_line_table(results, len(seeds))
            )
            parts.append(
                "Simulated time to the best peer's one-worker median regret at "
                f"{args.budget} evaluations (every arm, same finish line):\n\n"
                + common_target_table(results, args.budget)
            )
            dump(results, OUT / "bench_many_workers_runs.json")
        if "tabular" in sections:
            _, tab = many_workers(
                client, [tabular(t) for t in tables], [1], arms, seeds, args.budget
            )
            parts.append("Tabular tasks, one worker:\n\n" + tabular_table(tab, args.budget))
            dump(tab, OUT / "bench_many_workers_tabular_runs.json")
        if results:
            plot(results)
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        remove_sqlite_file(OUT / f"bench_many_workers_{port}.db")
    text = "\n\n".join(parts)
    print(f"\n{text}\n\n({time.perf_counter() - started:.0f} s)")
    if not args.no_record:
        given = argv if argv is not None else sys.argv[1:]
        command = " ".join(["python -m benchmarks.bench_many_workers", shlex.join(given)]).strip()
        append_results(
            "bench_many_workers",
            command,
            text,
            f"{len(seeds)} seeds; one torch thread; {time.perf_counter() - started:.0f} s.",
            packages=("optuna", "torch", "botorch"),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
