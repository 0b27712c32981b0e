"""How many workers can one tunewire server take? Simulated workers with a zero-cost
objective hammer a real server over loopback, so the server is the bottleneck.

    python -m benchmarks.bench_service            # the full run (about 6 minutes)
    python -m benchmarks.bench_service --quick    # a smoke run (about 40 s)
    python -m benchmarks.bench_service --loader python   # the Python client as the load

The simulated workers are a small Go program (benchmarks/loadgen, built here from
Debian's grpc-go the way scripts/clients_test.sh builds the Go client) when Go is
installed: on this 2-core machine the server shares the CPU with the load generator, and
Python's client threads took most of a core, which the server then did not have. Without
Go (or with --loader python) the workers are threads of the Python client.

For 1, 8, 32 and 64 concurrent workers, SQLite vs PostgreSQL, one vs two server
processes: suggest and report RPC throughput, p50/p99 latency measured at the client,
errors, and the server's peak RSS. Appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import append_results, free_port, peak_rss_mb, start_server_process

REPORTS_PER_TRIAL = 10
SPEC = {
    "parameters": [
        {"name": "x", "type": "float", "min": 0.0, "max": 1.0},
        {"name": "lr", "type": "float", "min": 1e-4, "max": 0.1, "scale": "log"},
        {"name": "layers", "type": "int", "min": 0, "max": 4},
        {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
    ],
    "metrics": [{"name": "loss", "goal": "minimize"}],
    "algorithm": "random",
}


@dataclass
class Run:
    backend: str
    servers: int
    workers: int
    suggest_ms: list[float]
    report_ms: list[float]
    reports: int
    suggests: int
    errors: int
    seconds: float
    peak_rss_mb: float


def _load_process(
    target: str, study: str, threads: int, seconds: float, first: int, out: Any
) -> None:
    """One load-generating process: `threads` workers, each suggest -> report x10 -> complete."""
    from tunewire.client import TunewireClientError, TuningClient

    suggest_ms: list[float] = []
    report_ms: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(i: int) -> None:
        client = TuningClient(target, timeout=30, retry_timeout=5)
        mine_s: list[float] = []
        mine_r: list[float] = []
        worker_id = f"bench-{first + i}"
        try:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                trials = client.suggest(study, worker_id)
                mine_s.append((time.perf_counter() - t0) * 1e3)
                for trial in trials:
                    for step in range(REPORTS_PER_TRIAL):
                        t0 = time.perf_counter()
                        trial.report(step, {"loss": 1.0 / (step + 1)})
                        mine_r.append((time.perf_counter() - t0) * 1e3)
                    trial.complete({"loss": 0.1})
        except TunewireClientError as exc:
            errors[0] += 1
            print(f"worker {worker_id}: {exc}", file=sys.stderr)
        finally:
            client.close()
            with lock:
                suggest_ms.extend(mine_s)
                report_ms.extend(mine_r)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((suggest_ms, report_ms, errors[0]))


ROOT = Path(__file__).resolve().parent.parent


def build_go_loader(tmp: Path) -> Path | None:
    """Builds benchmarks/loadgen; None (and why, on stderr) when it cannot be built here."""
    if not (shutil.which("go") and shutil.which("protoc")):
        print("no Go toolchain or protoc: the load is Python client threads", file=sys.stderr)
        return None
    out = tmp / "loadgen"
    env = dict(
        os.environ,
        GOPATH=f"{ROOT / 'clients/go/gen'}:/usr/share/gocode",
        GO111MODULE="off",
        GOPROXY="off",
        GOFLAGS="",
    )
    try:
        subprocess.run(
            ["bash", "scripts/gen_clients.sh"], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(
            ["go", "build", "-o", str(out), "."],
            cwd=ROOT / "benchmarks/loadgen",
            env=env,
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        print(f"cannot build the Go load generator: {exc.stderr.decode()[-2000:]}", file=sys.stderr)
        return None
    return out


def _go_load(
    loader: Path, addresses: list[str], study: str, workers: int, seconds: float
) -> tuple[list[float], list[float], int]:
    done = subprocess.run(
        [
            str(loader),
            "-target",
            ",".join(addresses),
            "-study",
            study,
            "-workers",
            str(workers),
            "-seconds",
            str(seconds),
            "-reports",
            str(REPORTS_PER_TRIAL),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    if done.stderr.strip():
        print(done.stderr.strip()[-2000:], file=sys.stderr)
    result = json.loads(done.stdout)
    return result["suggest_ms"], result["report_ms"], int(result["errors"])


def run_one(
    backend: str,
    storage: str,
    servers: int,
    workers: int,
    seconds: float,
    tmp: Path,
    loader: Path | None = None,
) -> Run:
    ports = [free_port() for _ in range(servers)]
    procs = [start_server_process(storage, p, tmp / f"server-{p}.log", threads=32) for p in ports]
    target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
    try:
        from tunewire.client import TuningClient

        study = f"bench-{uuid.uuid4().hex[:8]}"
        with TuningClient(target) as admin:
            admin.create_study(study, SPEC)
        if loader is not None:
            started = time.monotonic()
            results = [_go_load(loader, [f"127.0.0.1:{p}" for p in ports], study, workers, seconds)]
            elapsed = time.monotonic() - started
            rss = max(peak_rss_mb(p.pid) for p in procs)
            return _run(backend, servers, workers, results, elapsed, rss)
        n_procs = min(2, workers)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        shares = [workers // n_procs + (1 if i < workers % n_procs else 0) for i in range(n_procs)]
        loaders = []
        first = 0
        for share in shares:
            loader_process = ctx.Process(
                target=_load_process, args=(target, study, share, seconds, first, queue)
            )
            first += share
            loader_process.start()
            loaders.append(loader_process)
        started = time.monotonic()
        results = [queue.get(timeout=seconds + 120) for _ in loaders]
        elapsed = time.monotonic() - started
        for loader_process in loaders:
            loader_process.join()
        rss = max(peak_rss_mb(p.pid) for p in procs)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    return _run(backend, servers, workers, results, elapsed, rss)


def _run(
    backend: str,
    servers: int,
    workers: int,
    results: list[tuple[list[float], list[float], int]],
    elapsed: float,
    rss: float,
) -> Run:
    suggest_ms = [x for r in results for x in r[0]]
    report_ms = [x for r in results for x in r[1]]
    return Run(
        backend,
        servers,
        workers,
        suggest_ms,
        report_ms,
        len(report_ms),
        len(suggest_ms),
        sum(r[2] for r in results),
        elapsed,
        rss,
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(runs: list[Run]) -> str:
    lines = [
        "| backend | servers | workers | report RPC/s | report p50 ms | report p99 ms | "
        "suggest RPC/s | suggest p50 ms | suggest p99 ms | errors | server peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.backend} | {r.servers} | {r.workers} | {r.reports / r.seconds:,.0f} | "
            f"{statistics.median(r.report_ms) if r.report_ms else float('nan'):.1f} | "
            f"{pct(r.report_ms, 0.99):.1f} | {r.suggests / r.seconds:,.0f} | "
            f"{statistics.median(r.suggest_ms) if r.suggest_ms else float('nan'):.1f} | "
            f"{pct(r.suggest_ms, 0.99):.1f} | {r.errors} | {r.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seconds", type=float, default=None, help="load duration per config")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--loader",
        choices=("auto", "go", "python"),
        default="auto",
        help="the simulated workers: the Go load generator (auto: when Go is installed) "
        "or Python client threads",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    worker_counts = [1, 8, 64] if args.quick else [1, 8, 32, 64]
    from benchmarks.common import create_pg_database, drop_pg_database
    from tests.conftest import PG_ADMIN_URL  # the same PostgreSQL the tests use

    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        loader = build_go_loader(tmp) if args.loader != "python" else None
        if args.loader == "go" and loader is None:
            return 1
        pg_url = create_pg_database(PG_ADMIN_URL)
        try:
            configs = [("sqlite", f"sqlite:///{tmp / 'bench.db'}", 1)]
            if pg_url:
                configs += [("postgres", pg_url, 1), ("postgres", pg_url, 2)]
            for workers in worker_counts:
                for backend, storage, servers in configs:
                    run = run_one(backend, storage, servers, workers, seconds, tmp, loader)
                    runs.append(run)
                    print(table([run]).splitlines()[-1], flush=True)
        finally:
            if pg_url:
                drop_pg_database(PG_ADMIN_URL, pg_url)
    text = table(runs)
    print()
    print(text)
    if not args.no_record:
        command = (
            "python -m benchmarks.bench_service"
            + (" --quick" if args.quick else "")
            + (f" --loader {args.loader}" if args.loader != "auto" else "")
        )
        load = (
            "one Go load generator process (benchmarks/loadgen; a connection per worker)"
            if loader is not None
            else "2 Python client processes (threads)"
        )
        notes = (
            f"{seconds:.0f} s of load per row; simulated workers (zero-cost objective, "
            f"{REPORTS_PER_TRIAL} reports per trial) in {load} on the same 2-core machine "
            f"as the server(s), so client and server share the CPU. "
            f"Python {platform.python_version()}, {os.cpu_count()} cores."
        )
        append_results("bench_service", command, text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
