"""`tunewire train`: run trainer workers, one process per `--devices` entry.

    tunewire train --server HOST:PORT --study NAME --task digits-mlp [--devices cpu*2]

Settings come from flags or TUNEWIRE_SERVER / TUNEWIRE_TOKEN / TUNEWIRE_TLS /
TUNEWIRE_TLS_CA (the client commands' flags); exit codes: 0 done or stopped by a signal,
1 a task kept failing, 2 a configuration error, 3 server unreachable.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from queue import Empty
from types import FrameType

from tunewire.client.cli import add_tls_flags, uses_tls
from tunewire.trainer.devices import DeviceError, parse_devices
from tunewire.trainer.summary import (
    EXIT_CONFIG,
    EXIT_FAILURES,
    KEY_METRICS,
    WorkerSummary,
    format_metrics,
    format_params,
)
from tunewire.trainer.tasks import BUILTIN_TASKS, DEFAULT_TASK
from tunewire.trainer.worker import WorkerSettings, run_worker, worker_settings_for

log = logging.getLogger("tunewire.trainer")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    tasks = ", ".join(BUILTIN_TASKS)
    p = argparse.ArgumentParser(
        prog="tunewire train",
        description="Train networks with the hyperparameters a tunewire server suggests.",
        epilog=(
            f"Built-in tasks: {tasks}. A user task is 'module:function' or "
            "'path/to/file.py:function'; the function gets (params, reporter) and returns "
            "its final metrics (see the README)."
        ),
    )
    p.add_argument(
        "--server",
        default=env.get("TUNEWIRE_SERVER", "localhost:50051"),
        help="server address host:port (env TUNEWIRE_SERVER; default %(default)s)",
    )
    p.add_argument(
        "--token", default=env.get("TUNEWIRE_TOKEN", ""), help="bearer token (env TUNEWIRE_TOKEN)"
    )
    add_tls_flags(p)
    p.add_argument("--study", required=True, help="study name")
    p.add_argument(
        "--task",
        default=DEFAULT_TASK,
        help="built-in task or module:function (default %(default)s)",
    )
    p.add_argument(
        "--devices",
        default="auto",
        help="one worker process per entry: cpu, cuda:0,cuda:1, cpu*2 "
        "(default: the first GPU if any, else the CPU)",
    )
    p.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="stop each worker after N trials (default: until the study is done)",
    )
    create = p.add_mutually_exclusive_group()
    create.add_argument(
        "--create-study",
        dest="create_study",
        action="store_true",
        default=True,
        help="create the study if missing from --space or the task's default spec (default)",
    )
    create.add_argument(
        "--no-create-study",
        dest="create_study",
        action="store_false",
        help="only join an existing study",
    )
    p.add_argument(
        "--space",
        default=None,
        metavar="FILE.yaml",
        help="study spec (search space, metrics, algorithm) used to create the study",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of data split and weights; same for all workers (default 0)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default 1)")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument(
        "--worker-id",
        default="",
        help="stable worker id (default host:device:pid; ':N' added per device)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "off"),
        default="auto",
        help="a bar per trial on a terminal, log lines otherwise (default auto)",
    )
    p.add_argument(
        "--server-wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="retry an unreachable server this long before giving up (default 600)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return p


def configure_logging(verbose: bool, prefix: str = "") -> None:
    """Log lines go to stderr (stdout carries the summary)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {prefix}%(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        logging.getLogger("tunewire.trainer").setLevel(logging.INFO)


def _child(settings: WorkerSettings, index: int, verbose: bool, queue: mp.Queue) -> None:
    """Entry of a worker process started for one `--devices` entry."""
    configure_logging(verbose, prefix=f"[{settings.device}#{index}] ")
    queue.put(run_worker(settings, index=index))


def run_processes(
    settings: WorkerSettings, devices: Sequence[str], verbose: bool
) -> list[WorkerSummary]:
    """One worker process per device; SIGTERM to this process is passed on to them (a
    terminal's Ctrl-C reaches them directly), and each hands its trial back."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    queue: mp.Queue = ctx.Queue()
    processes = []
    for index, device in enumerate(devices):
        child_settings = worker_settings_for(settings, device, index, len(devices))
        if child_settings.progress == "auto":
            # Bars of several processes on one terminal would overwrite each other.
            child_settings = replace(child_settings, progress="log")
        proc = ctx.Process(
            target=_child,
            args=(child_settings, index, verbose, queue),
            name=f"tunewire-worker-{index}",
        )
        proc.start()
        processes.append(proc)

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in processes:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signum)

    previous = signal.signal(signal.SIGTERM, forward)
    previous_int = signal.signal(signal.SIGINT, lambda *_: None)  # children handle it
    try:
        summaries = _collect(queue, processes, devices)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return summaries


def _collect(
    queue: mp.Queue, processes: Sequence[mp.process.BaseProcess], devices: Sequence[str]
) -> list[WorkerSummary]:
    """Every worker's summary; a process that died without one (killed, crashed in C code)
    gets a summary saying so instead of blocking the CLI forever."""
    summaries: list[WorkerSummary] = []
    while len(summaries) < len(processes):
        try:
            summaries.append(queue.get(timeout=1.0))
        except Empty:
            if all(not p.is_alive() for p in processes):
                try:
                    summaries.append(queue.get(timeout=1.0))  # the last one in flight
                except Empty:
                    break
    for proc in processes:
        proc.join()
    missing = len(processes) - len(summaries)
    dead = [(p, device) for p, device in zip(processes, devices, strict=True) if p.exitcode]
    for proc, device in dead[:missing]:
        summaries.append(
            WorkerSummary(
                worker_id=proc.name,
                device=device,
                exit_code=EXIT_FAILURES,
                message=f"worker process died with exit code {proc.exitcode}",
            )
        )
    return summaries


def format_summary(summaries: Sequence[WorkerSummary]) -> str:
    """The end-of-run report: per worker counts and best trial, then the overall best."""
    lines = []
    for s in summaries:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(s.counts().items())) or "no trials"
        lines.append(
            f"worker {s.worker_id} ({s.device}): {counts} in {s.seconds:.1f} s"
            + (f"; {s.message}" if s.message else "")
        )
    bests = [(s, s.best()) for s in summaries]
    found = [(s, b) for s, b in bests if b is not None and b.metrics]
    if found:
        pick = max if found[0][0].maximize else min
        s, best = pick(found, key=lambda sb: sb[1].metrics[sb[0].objective])  # type: ignore[index]
        assert best is not None and best.metrics is not None
        lines.append(
            f"best trial of these workers: #{best.trial_id} "
            f"{format_metrics(best.metrics, (s.objective, *KEY_METRICS))}"
        )
        lines.append(f"  params: {format_params(best.params)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`tunewire train ...`; returns the process exit code (the worst of the workers')."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        devices = parse_devices(args.devices)
    except DeviceError as exc:
        print(f"tunewire train: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.max_trials is not None and args.max_trials < 1:
        print("tunewire train: --max-trials must be >= 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.threads is not None and args.threads < 1:
        print("tunewire train: --threads must be >= 1", file=sys.stderr)
        return EXIT_CONFIG
    settings = WorkerSettings(
        server=args.server,
        study=args.study,
        task=args.task,
        device=devices[0],
        worker_id=args.worker_id,
        max_trials=args.max_trials,
        token=args.token or None,
        tls=uses_tls(args),
        tls_ca=args.tls_ca or None,
        create_study=args.create_study,
        space=args.space,
        seed=args.seed,
        threads=args.threads,
        amp=args.amp,
        progress=args.progress,
        server_wait_s=args.server_wait,
    )
    if len(devices) == 1:
        summaries = [run_worker(settings)]
    else:
        summaries = run_processes(settings, devices, args.verbose)
    print(format_summary(summaries), flush=True)
    for s in summaries:
        if s.exit_code:
            print(f"tunewire train: worker {s.worker_id}: {s.message}", file=sys.stderr)
    return max(s.exit_code for s in summaries)


if __name__ == "__main__":
    sys.exit(main())
