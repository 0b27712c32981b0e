"""Do more trainer workers finish a tuning job sooner, without a worse result? Real training
(the digits-mlp task, its default search space) at an equal trial budget with 1, 2 and 4
trainer processes against one server process.

    python -m benchmarks.bench_trainers            # full: 24 trials, 3 seeds, gp and sobol
    python -m benchmarks.bench_trainers --quick    # smoke: 6 trials, 1 seed, sobol, 1-2 workers

GP is the product's default algorithm; its suggestions depend on what finished first, so
it also shows whether parallel suggestions cost accuracy. Sobol is the pure-training
control: every worker count gets the same configurations (trial i gets point i), so its
ratio measures the workers alone. Server-side early stopping is off so that the work per
trial does not depend on completion order. Each trainer uses one torch thread, and so does
the server (`--torch-threads 1`), as every process of a benchmark on these 2 cores does
(shared/BENCHMARKS.md): its GP fits are too small to gain from a second thread, and
idle-spinning OpenMP threads only take CPU from the trainers.

Two throughput measures, both with their speed-up over one worker (same seed):
- wall: trials per minute over the whole job, from starting the trainer processes to the
  last one's exit, so it includes each process's start-up (importing torch, loading data);
- steady: trials per minute from the first trial's start (the server's timestamp of the
  suggestion request that created it) to the last trial's end, i.e. without start-up, as
  in a long tuning run.
Per-seed speed-ups pair each seed's jobs, which is exact for Sobol but not for GP: one and
two GP workers train different networks (completion order changes the history), so the
table also gives pooled speed-ups (all seeds' trials over all seeds' time), the training
time per trial (which networks a job trained) and the server's CPU per trial.
A calibration at the end gives the machine's own ceiling: the first Sobol job's networks
trained without a server by one process, then by two processes at once. Two workers cannot
beat that ratio through the service; how close they come is the service's overhead.
Appends the table to benchmarks/RESULTS.md (section "bench_trainers").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import append_results, cpu_seconds, free_port, start_server_process
from tunewire.client import TuningClient
from tunewire.trainer.tasks import BUILTIN_TASKS

TASK = "digits-mlp"


@dataclass
class Run:
    algorithm: str
    workers: int
    seed: int
    trials: int  # ended in any state (completed, infeasible...): each cost a training run
    wall_s: float
    wall_trials_per_min: float
    trials_per_min: float  # steady: first trial's start to last trial's end
    best_val_loss: float
    best_test_accuracy: float  # of the trial with the best validation loss
    epochs: int
    span_s: float  # first trial's start to last trial's end
    train_s: float  # the trainers' own training time, summed over trials
    server_cpu_s: float  # CPU the server spent during the job (mostly its GP)
    trainer_cpu_s: float  # CPU the trainer processes spent, start-up included
    configs: list[dict[str, Any]]  # the ended trials' parameters, in trial order


def run_once(
    target: str, algorithm: str, workers: int, seed: int, budget: int, log: Path, server_pid: int
) -> Run:
    """One tuning job: a fresh study and `workers` trainer processes until the budget is spent."""
    study = f"bench-{algorithm}-{workers}w-s{seed}-{time.time_ns()}"
    spec = BUILTIN_TASKS[TASK].default_spec()
    spec.update(algorithm=algorithm, seed=seed, max_trials=budget, early_stopping={"rule": "none"})
    with TuningClient(target) as client:
        client.create_study(study, spec)
        cpu_before = cpu_seconds(server_pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_before = children.ru_utime + children.ru_stime
        started = time.perf_counter()
        with log.open("a") as out:
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tunewire.trainer",
                        "--server",
                        target,
                        "--study",
                        study,
                        "--task",
                        TASK,
                        "--no-create-study",
                        "--progress",
                        "off",
                        "--threads",
                        "1",
                        "--devices",
                        "cpu",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                for _ in range(workers)
            ]
            codes = [p.wait() for p in procs]
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(server_pid) - cpu_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        trainer_cpu = children.ru_utime + children.ru_stime - children_before
        if any(codes):
            raise RuntimeError(f"a trainer exited with {codes}; see {log}")
        trials = client.list_trials(study, measurements=False)
        best = client.best_trials(study, 1)
    ended = [t for t in trials if t.end_time > 0]
    finished = [t for t in ended if t.final_metrics]
    span = max(t.end_time for t in ended) - min(t.start_time for t in ended)
    metrics = best[0].final_metrics or {} if best else {}
    return Run(
        algorithm=algorithm,
        workers=workers,
        seed=seed,
        trials=len(ended),
        wall_s=wall,
        wall_trials_per_min=60.0 * len(ended) / wall,
        trials_per_min=60.0 * len(ended) / span if span > 0 else float("nan"),
        best_val_loss=metrics.get("val_loss", float("nan")),
        best_test_accuracy=metrics.get("test_accuracy", float("nan")),
        epochs=int(sum((t.final_metrics or {}).get("epochs_trained", 0) for t in finished)),
        span_s=span,
        train_s=sum((t.final_metrics or {}).get("train_seconds", 0.0) for t in finished),
        server_cpu_s=server_cpu,
        trainer_cpu_s=trainer_cpu,
        configs=[t.params for t in sorted(ended, key=lambda t: t.id)],
    )


def train_configs(start_at: float, path: str, reverse: bool) -> None:
    """Calibration child: from wall-clock time `start_at`, trains every configuration in the
    JSON file at `path` on digits (in reverse order if asked), without a server, and prints
    the seconds it took."""
    import torch

    from tunewire.trainer.reporter import Reporter

    torch.set_num_threads(1)
    configs = json.loads(Path(path).read_text())
    task = BUILTIN_TASKS[TASK]
    task(dict(configs[0], max_epochs=1), Reporter())  # warm-up: data, allocator
    time.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()
    for params in configs[::-1] if reverse else configs:
        task(params, Reporter())
    print(time.perf_counter() - started, flush=True)


def calibrate(configs: list[dict[str, Any]], tmp: Path) -> tuple[float, float, float]:
    """The machine's own ceiling for two workers on this job's networks: `configs` trained
    by one process alone, then by two processes at once (the second in reverse order, so
    that both train every size at different moments), with no server, suggestion or report.

    Returns (seconds alone, mean seconds of the two together, throughput ratio
    2 * alone / together).
    """
    path = tmp / "calibration.json"
    path.write_text(json.dumps(configs))

    def seconds(processes: int) -> list[float]:
        start_at = time.time() + 8.0  # after every child's imports and warm-up
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from benchmarks.bench_trainers import train_configs; "
                    f"train_configs({start_at}, {str(path)!r}, {i == 1})",
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,  # where `benchmarks` imports from
            )
            for i in range(processes)
        ]
        outs = [proc.communicate()[0] for proc in procs]
        if any(proc.returncode for proc in procs):
            raise RuntimeError("a calibration process failed")
        return [float(out) for out in outs]

    alone = seconds(1)[0]
    together = statistics.mean(seconds(2))
    return alone, together, 2 * alone / together


def _median_iqr(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return f"{format(statistics.median(values), fmt)} [{format(q[0], fmt)}–{format(q[2], fmt)}]"


def _pooled_rate(runs: Iterable[Run], seconds: str) -> float:
    """Trials per second over all seeds' jobs together: total trials over total time."""
    runs = list(runs)
    return sum(r.trials for r in runs) / sum(getattr(r, seconds) for r in runs)


def table(runs: list[Run], worker_counts: list[int]) -> str:
    lines = [
        "| algorithm | workers | trials | wall s | speed-up vs 1, wall | steady trials/min | "
        "speed-up vs 1, steady | pooled speed-up, wall / steady | training s per trial | "
        "trainer CPU s per trial | server CPU s per trial | trainers busy training | "
        "best val loss | its test accuracy | epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algorithm in dict.fromkeys(r.algorithm for r in runs):
        ones = {r.seed: r for r in runs if r.algorithm == algorithm and r.workers == 1}
        for n in worker_counts:
            rs = [r for r in runs if r.algorithm == algorithm and r.workers == n]
            if not rs:
                continue
            wall_up = [
                r.wall_trials_per_min / ones[r.seed].wall_trials_per_min
                for r in rs
                if r.seed in ones
            ]
            steady_up = [
                r.trials_per_min / ones[r.seed].trials_per_min for r in rs if r.seed in ones
            ]
            trials = sorted({r.trials for r in rs})
            pooled = "n/a"
            if ones:
                pooled = (
                    f"{_pooled_rate(rs, 'wall_s') / _pooled_rate(ones.values(), 'wall_s'):.2f} / "
                    f"{_pooled_rate(rs, 'span_s') / _pooled_rate(ones.values(), 'span_s'):.2f}"
                )
            lines.append(
                f"| {algorithm} | {n} | {'/'.join(map(str, trials))} | "
                f"{_median_iqr([r.wall_s for r in rs], '.1f')} | "
                f"{_median_iqr(wall_up, '.2f') if wall_up else 'n/a'} | "
                f"{_median_iqr([r.trials_per_min for r in rs], '.1f')} | "
                f"{_median_iqr(steady_up, '.2f') if steady_up else 'n/a'} | {pooled} | "
                f"{_median_iqr([r.train_s / r.trials for r in rs], '.2f')} | "
                f"{_median_iqr([r.trainer_cpu_s / r.trials for r in rs], '.2f')} | "
                f"{_median_iqr([r.server_cpu_s / r.trials for r in rs], '.2f')} | "
                f"{_median_iqr([r.train_s / (r.workers * r.span_s) for r in rs], '.2f')} | "
                f"{_median_iqr([r.best_val_loss for r in rs], '.4f')} | "
                f"{_median_iqr([r.best_test_accuracy for r in rs], '.4f')} | "
                f"{_median_iqr([float(r.epochs) for r in rs], '.0f')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (under a minute or two)")
    p.add_argument("--trials", type=int, default=None, help="trial budget per job (24; quick 6)")
    p.add_argument("--seeds", type=int, default=None, help="repeats with seeds 0..N-1 (3; quick 1)")
    p.add_argument(
        "--first-seed", type=int, default=0, help="start the seeds here (more seeds, another run)"
    )
    p.add_argument("--workers", default=None, help="worker counts (1,2,4; quick 1,2)")
    p.add_argument("--algorithms", default=None, help="gp,sobol,random (gp,sobol; quick sobol)")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    budget = args.trials or (6 if args.quick else 24)
    seeds = args.seeds or 1 if args.quick else args.seeds or 3
    worker_counts = [
        int(w) for w in (args.workers or ("1,2" if args.quick else "1,2,4")).split(",")
    ]
    algorithms = (args.algorithms or ("sobol" if args.quick else "gp,sobol")).split(",")
    load_before = os.getloadavg()[0]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tw-bench-trainers-") as tmp:
        log = Path(tmp) / "bench.log"
        port = free_port()
        server = start_server_process(
            f"sqlite:///{Path(tmp) / 'bench.db'}", port, log, torch_threads=1
        )
        try:
            for seed in range(args.first_seed, args.first_seed + seeds):
                for algorithm in algorithms:
                    # Alternate the order so that drift in machine load hits every count.
                    order = worker_counts if seed % 2 == 0 else worker_counts[::-1]
                    for workers in order:
                        run = run_once(
                            f"127.0.0.1:{port}", algorithm, workers, seed, budget, log, server.pid
                        )
                        runs.append(run)
                        print(
                            f"{algorithm} seed {seed} workers {workers}: {run.trials} trials in "
                            f"{run.wall_s:.1f} s ({run.wall_trials_per_min:.1f}/min wall, "
                            f"{run.trials_per_min:.1f}/min steady), best val loss "
                            f"{run.best_val_loss:.4f}, its test accuracy "
                            f"{run.best_test_accuracy:.4f}",
                            flush=True,
                        )
        finally:
            server.terminate()
            server.wait(timeout=30)
        # The first Sobol job's networks (else the first job's), trained without the service.
        source = next((r for r in runs if r.algorithm == "sobol"), runs[0])
        alone, together, ceiling = calibrate(source.configs, Path(tmp))
    calibration = (
        f"Calibration, the machine's own ceiling for two workers: the {len(source.configs)} "
        f"networks of the {source.algorithm} job with seed {source.seed} and "
        f"{source.workers} worker(s), trained on digits without a server, took {alone:.1f} s "
        f"in one process and {together:.1f} s in each of two processes training them at "
        f"once: two workers can do at most {ceiling:.2f}x the throughput of one on these "
        f"networks here, before any suggestion, report or start-up."
    )
    print(calibration, flush=True)
    result = table(runs, worker_counts) + "\n\n" + calibration
    print(result)
    if not args.no_record:
        command = (
            "python -m benchmarks.bench_trainers"
            + (" " + shlex.join(argv if argv is not None else sys.argv[1:])).rstrip()
        )
        notes = (
            f"{TASK}, default space, early stopping off, one torch thread per trainer and "
            "for the server, "
            f"{os.cpu_count()} CPU cores shared with other work (load average "
            f"{load_before:.1f} at start); medians [IQR] over {seeds} seed(s) "
            f"({args.first_seed}-{args.first_seed + seeds - 1}). Trials: ended "
            "trials per job (any state; all count as work). Wall: from starting the trainer "
            "processes to the last one's exit, so it includes each process's start-up "
            "(importing torch, loading data); its speed-up is that of trials per wall minute. "
            "Steady: trials per minute from the first trial's start (the suggestion request that "
            "created it, server time) to the last trial's end, without start-up. Speed-ups are "
            "per seed against one worker; pooled speed-ups divide all seeds' trials by all "
            "seeds' time (the throughput of one long run). Training s: the trainers' own "
            "training time per trial (which networks a job trained); trainer CPU: the trainer "
            "processes' CPU per trial, start-up included; server CPU: the server "
            "process's CPU per trial, mostly its GP. Trainers busy training: the trainers' "
            "training seconds over workers x steady span, i.e. the share of the trainers' time "
            "not spent waiting for suggestions, RPCs or the last trial (it does not depend on "
            "which networks were trained). Test accuracy is that of the trial with "
            "the best validation loss."
        )
        append_results("bench_trainers", command, result, notes, ("torch", "grpcio"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
