"""Does the server stay fast when a study holds tens of thousands of trials?

    python -m benchmarks.bench_large_study                      # 1,000 / 10,000 / 50,000 trials
    python -m benchmarks.bench_large_study --baseline fc6d0fb   # and that commit's server beside
    python -m benchmarks.bench_large_study --quick              # a smoke run

A study on SQLite is filled with n finished trials of 10 reports each (written straight
into the database file: the rows the service writes, in seconds instead of minutes), with
the median early-stopping rule and a trial budget, as a long-running production study
would have. Then, through gRPC, median latencies of what workers and people call:
a worker's cycle (SuggestTrials, 3 reports with stop decisions, CompleteTrial), the best
trial (ListOptimalTrials), a page of 100 trials (ListTrials) and GetStudy. Last, 16
simulated workers (the Go load generator of bench_service) report on another study for
5 s while a client keeps asking for the best trial of the large one, and again while 4
other workers report on the large one (whose median rule reads every completed trial on
each report): their report throughput and p99 show whether a listing or a large study's
decisions hold up everyone else.

`--baseline REV` runs the server of an earlier commit (a git worktree put first on the
server's PYTHONPATH) on the same data beside the current one. Optuna (when installed)
runs the same worker cycle and best-trial call on its RDBStorage (SQLite) up to 10,000
trials. Appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_service import REPORTS_PER_TRIAL, SPEC, build_go_loader
from benchmarks.common import append_results, free_port, start_server_process

ROOT = Path(__file__).resolve().parent.parent
REPORTS = 10  # per filled trial
LARGE_SPEC: dict[str, Any] = {
    "parameters": [
        {"name": "x", "type": "float", "min": 0.0, "max": 1.0},
        {"name": "layers", "type": "int", "min": 0, "max": 4},
    ],
    "metrics": [{"name": "loss", "goal": "minimize"}],
    "algorithm": "random",
    "max_trials": 1_000_000,
    "early_stopping": {"rule": "median", "min_completed_trials": 5},
}


def fill(db: Path, n: int) -> None:
    """n COMPLETED trials of study 1 with REPORTS reports each, as the service writes them."""
    now = time.time()
    con = sqlite3.connect(db, timeout=30)
    has_value = "value" in {r[1] for r in con.execute("PRAGMA table_info(measurements)")}
    with con:
        con.executemany(
            "INSERT INTO trials (study_id, trial_id, params_json, state, source, worker_id,"
            " created_at, started_at, ended_at, final_metrics_json)"
            " VALUES (1, ?, ?, 'completed', 'algorithm', ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    json.dumps({"layers": i % 5, "x": i / n}, sort_keys=True),
                    f"filler-{i % 64}",
                    now,
                    now,
                    now,
                    json.dumps({"loss": _loss(i, n, REPORTS - 1)}),
                )
                for i in range(1, n + 1)
            ],
        )
        columns = "study_id, trial_id, step, metrics_json, created_at" + (
            ", value" if has_value else ""
        )
        marks = ", ".join("?" * (6 if has_value else 5))
        con.executemany(
            f"INSERT INTO measurements ({columns}) VALUES ({marks})",
            (
                (1, i, s, json.dumps({"loss": v}), now, *((v,) if has_value else ()))
                for i in range(1, n + 1)
                for s in range(REPORTS)
                for v in (_loss(i, n, s),)
            ),
        )
        con.execute("UPDATE studies SET next_trial_id = ? WHERE id = 1", (n + 1,))
    con.close()


def _loss(i: int, n: int, step: int) -> float:
    return 1.0 / (step + 1) + (i * 7919 % n) / n


def _median_ms(fn: Callable[[], Any], calls: int) -> float:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def measure_server(
    n: int, tmp: Path, loader: Path | None, env: dict[str, str] | None, quick: bool
) -> dict[str, str]:
    from tunewire.client import TuningClient
    from tunewire.v1 import tuning_service_pb2 as api

    db = tmp / f"large-{n}-{time.monotonic_ns()}.db"
    port = free_port()
    server = start_server_process(f"sqlite:///{db}", port, tmp / f"server-{port}.log", 8, env=env)
    target = f"127.0.0.1:{port}"
    row: dict[str, str] = {}
    try:
        with TuningClient(target, timeout=120) as client:
            client.create_study("large", LARGE_SPEC)
            client.create_study("small", SPEC)
            fill(db, n)
            cycles = 5 if quick else 15
            suggest, report, complete = [], [], []
            for k in range(cycles):
                t0 = time.perf_counter()
                (trial,) = client.suggest("large", f"bench-{k}")
                suggest.append((time.perf_counter() - t0) * 1e3)
                for step in range(3):
                    t0 = time.perf_counter()
                    trial.report(step, {"loss": 0.0})  # the best curve: never stopped
                    report.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                trial.complete({"loss": 0.0})
                complete.append((time.perf_counter() - t0) * 1e3)
            row["suggest"] = f"{statistics.median(suggest):.1f}"
            row["report"] = f"{statistics.median(report):.1f}"
            row["complete"] = f"{statistics.median(complete):.1f}"
            row["best"] = f"{_median_ms(lambda: client.best_trials('large'), 5):.1f}"
            page = api.ListTrialsRequest(study_name="large", page_size=100)
            row["page"] = f"{_median_ms(lambda: client.call('ListTrials', page), 5):.1f}"
            row["study"] = f"{_median_ms(lambda: client.get_study('large'), 5):.1f}"
        row["while listing"] = _reports_while_listing(target, loader) if loader else "no Go"
        row["beside"] = _reports_beside_large(target, loader) if loader else "no Go"
    finally:
        server.terminate()
        server.wait(10)
    return row


def _reports_while_listing(target: str, loader: Path) -> str:
    """16 Go workers on the small study while one client asks for the best large trial."""
    from tunewire.client import TuningClient

    stop = threading.Event()
    listings = [0]

    def keep_listing() -> None:
        with TuningClient(target, timeout=300) as client:
            while not stop.is_set():
                client.best_trials("large")
                listings[0] += 1

    lister = threading.Thread(target=keep_listing)
    lister.start()
    try:
        done = subprocess.run(
            [str(loader), "-target", target, "-study", "small", "-workers", "16"]
            + ["-seconds", "5", "-reports", str(REPORTS_PER_TRIAL)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        stop.set()
        lister.join()
    ms = sorted(json.loads(done.stdout)["report_ms"])
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    return f"{len(ms) / 5:,.0f} RPC/s, p99 {p99:,.0f} ms ({listings[0]} listings)"


def _go_workers(loader: Path, target: str, study: str, workers: int) -> list[str]:
    return [str(loader), "-target", target, "-study", study, "-workers", str(workers)] + [
        "-seconds",
        "5",
        "-reports",
        str(REPORTS_PER_TRIAL),
        "-first",
        "1000" if study == "large" else "0",
    ]


def _reports_beside_large(target: str, loader: Path) -> str:
    """16 Go workers on the small study while 4 others report on the large one, whose
    median rule reads every completed trial on each report."""
    large = subprocess.Popen(
        _go_workers(loader, target, "large", 4), stdout=subprocess.PIPE, text=True
    )
    try:
        small = subprocess.run(
            _go_workers(loader, target, "small", 16),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    finally:
        large_out, _ = large.communicate(timeout=300)
    ms = sorted(json.loads(small.stdout)["report_ms"])
    big = sorted(json.loads(large_out)["report_ms"])
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    big_p50 = statistics.median(big) if big else float("nan")
    return (
        f"{len(ms) / 5:,.0f} RPC/s, p99 {p99:,.0f} ms "
        f"(large-study reports: {len(big) / 5:,.1f}/s, p50 {big_p50:,.0f} ms)"
    )


def measure_optuna(n: int, tmp: Path, quick: bool) -> dict[str, str]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp / f'optuna-{n}-{time.monotonic_ns()}.db'}"
    study = optuna.create_study(
        storage=storage,
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    dists = {
        "x": optuna.distributions.FloatDistribution(0.0, 1.0),
        "layers": optuna.distributions.IntDistribution(0, 4),
    }
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"x": i / n, "layers": i % 5},
                distributions=dists,
                value=_loss(i, n, REPORTS - 1),
                intermediate_values={s: _loss(i, n, s) for s in range(REPORTS)},
            )
            for i in range(1, n + 1)
        ]
    )
    ask, report, tell = [], [], []
    for _ in range(5 if quick else 15):
        t0 = time.perf_counter()
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("layers", 0, 4)
        ask.append((time.perf_counter() - t0) * 1e3)
        for step in range(3):
            t0 = time.perf_counter()
            trial.report(0.0, step)
            trial.should_prune()
            report.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        study.tell(trial, 0.0)
        tell.append((time.perf_counter() - t0) * 1e3)
    return {
        "suggest": f"{statistics.median(ask):.1f}",
        "report": f"{statistics.median(report):.1f}",
        "complete": f"{statistics.median(tell):.1f}",
        "best": f"{_median_ms(lambda: study.best_trial, 5):.1f}",
        "page": "—",
        "study": "—",
        "while listing": "—",
        "beside": "—",
    }


def baseline_env(rev: str, tmp: Path) -> dict[str, str]:
    """An environment whose `tunewire` server, client and API come from commit `rev`."""
    tree = tmp / f"baseline-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    shim = tmp / "baseline-path" / "tunewire"
    shim.mkdir(parents=True)
    for name, path in (("server", "server"), ("client", "client"), ("v1", "protos/tunewire/v1")):
        (shim / name).symlink_to(tree / path)
    return dict(os.environ, PYTHONPATH=str(shim.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--baseline", help="also run the server of this git revision")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    sizes = (1_000, 5_000) if args.quick else (1_000, 10_000, 50_000)
    try:
        import optuna  # noqa: F401

        have_optuna = True
    except ImportError:
        have_optuna = False
    columns = ("suggest", "report", "complete", "best", "page", "study", "while listing", "beside")
    lines = [
        "| trials | server | suggest ms | report ms | complete ms | best trial ms "
        "| ListTrials ms | GetStudy ms | 16 workers' reports while one client lists "
        "| 16 workers' reports while 4 report on the large study |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    started = time.time()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        loader = build_go_loader(tmp)
        servers: list[tuple[str, dict[str, str] | None]] = [("tunewire", None)]
        if args.baseline:
            servers.append((f"tunewire at {args.baseline}", baseline_env(args.baseline, tmp)))
        try:
            for n in sizes:
                for label, env in servers:
                    row = measure_server(n, tmp, loader, env, args.quick)
                    lines.append(
                        f"| {n:,} | {label} | " + " | ".join(row[c] for c in columns) + " |"
                    )
                    print(lines[-1], flush=True)
                if have_optuna and n <= 10_000:
                    row = measure_optuna(n, tmp, args.quick)
                    lines.append(
                        f"| {n:,} | Optuna RDBStorage | "
                        + " | ".join(row[c] for c in columns)
                        + " |"
                    )
                    print(lines[-1], flush=True)
        finally:
            if args.baseline:
                subprocess.run(
                    [
                        "git",
                        "worktree",
                        "remove",
                        "--force",
                        str(tmp / f"baseline-{args.baseline}"),
                    ],
                    cwd=ROOT,
                    check=False,
                    capture_output=True,
                )
    table = "\n".join(lines)
    print()
    print(table)
    if not args.no_record:
        command = (
            "python -m benchmarks.bench_large_study"
            + (" --quick" if args.quick else "")
            + (f" --baseline {args.baseline}" if args.baseline else "")
        )
        notes = (
            f"{time.time() - started:.0f} s wall; SQLite; median latency through gRPC of a "
            "worker's calls and of listings in a study of n finished trials with 10 reports "
            "each (median rule, trial budget set). Optuna: ask / report + should_prune / tell "
            "and best_trial on its SQLite RDBStorage"
            + ("" if have_optuna else " (not installed)")
            + "."
        )
        append_results("bench_large_study", command, table, notes, packages=("grpcio", "optuna"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
