"""The main job for a newcomer (`tunewire demo`): a local server on SQLite, two trainer
worker processes tuning an MLP on the digits data, and the best trial at the end.

Everything runs on this machine; it takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tunewire.client import TuningClient
from tunewire.trainer.cli import configure_logging, run_processes
from tunewire.trainer.summary import format_params
from tunewire.trainer.tasks import BUILTIN_TASKS
from tunewire.trainer.worker import WorkerSettings

TASK = "digits-mlp"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunewire demo",
        description="Start a local server, tune an MLP on digits with two workers, show the best.",
    )
    p.add_argument("--trials", type=int, default=30, help="trial budget (default 30)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--algorithm",
        default="",
        help="gp, gp_mf, random, sobol (default: the task's default spec, gp)",
    )
    p.add_argument(
        "--dir",
        default=".tunewire",
        help="where the SQLite database goes (default ./.tunewire)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the study and the training")
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return p


class LocalServer:
    """`tunewire serve` in a child process on a free loopback port, logging to a file."""

    def __init__(self, database: Path, log: Path) -> None:
        self.log = log
        with log.open("w") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tunewire.server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--storage",
                    f"sqlite:///{database.resolve()}",
                    # The server shares the cores with the workers: its GP fits are too
                    # small to gain from more torch threads, and idle-spinning ones take
                    # CPU from training.
                    "--torch-threads",
                    "1",
                ],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "tunewire server listening on HOST:PORT"
        if not line.startswith("tunewire server listening on"):
            self.process.wait(timeout=30)
            raise RuntimeError(f"the server did not start; its log:\n{log.read_text()[-2000:]}")
        self.target = line.rsplit(" ", 1)[-1].strip()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; returns the exit code (non-zero when no trial finished)."""
    args = build_parser().parse_args(argv)
    if args.trials < 1 or args.workers < 1:
        print("tunewire demo: --trials and --workers must be >= 1", file=sys.stderr)
        return 2
    configure_logging(args.verbose)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "demo.db"
    try:
        server = LocalServer(database, folder / "server.log")
    except (OSError, RuntimeError) as exc:
        print(f"tunewire demo: {exc}", file=sys.stderr)
        return 1
    # A new study per run: a rerun must not find the previous run's finished study.
    study = f"digits-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = BUILTIN_TASKS[TASK].default_spec()
    spec.update(max_trials=args.trials, seed=args.seed)
    if args.algorithm:
        spec["algorithm"] = args.algorithm
    print(
        f"tunewire demo: server on {server.target} (storage {database}); study {study}: "
        f"{args.trials} trials of {TASK}, algorithm {spec['algorithm']}, "
        f"{args.workers} workers",
        flush=True,
    )
    started = time.perf_counter()
    try:
        with TuningClient(server.target) as client:
            client.create_study(study, spec)
            settings = WorkerSettings(
                server=server.target,
                study=study,
                task=TASK,
                device="cpu",
                create_study=False,
                seed=args.seed,
                progress="log",
            )
            summaries = run_processes(settings, ["cpu"] * args.workers, args.verbose)
            wall = time.perf_counter() - started
            best = client.best_trials(study, 1)
            trials = client.list_trials(study, measurements=False)
    finally:
        server.stop()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    print(
        f"\n{len(trials)} trials in {wall:.0f} s: "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    )
    for s in summaries:
        if s.exit_code:
            print(f"worker {s.worker_id}: {s.message}", file=sys.stderr)
    if not best or not best[0].final_metrics:
        print("no trial finished", file=sys.stderr)
        return 1
    b = best[0]
    m = b.final_metrics or {}
    print(f"best trial #{b.id} ({b.state}):")
    print(f"  validation loss  {m.get('val_loss', float('nan')):.4f}")
    print(f"  test accuracy    {m.get('test_accuracy', float('nan')):.4f}")
    print(
        f"  epochs trained   {m.get('epochs_trained', 0):.0f}, "
        f"{m.get('train_seconds', 0):.1f} s, {m.get('n_params', 0):.0f} parameters"
    )
    print(f"  hyperparameters  {format_params(b.params)}")
    command = tunewire_command()
    print(
        f"\nThe study is kept in {database}. To browse it, from {Path.cwd()}:\n"
        f"  {command} serve --storage sqlite:///{database}    # a server; leave it running\n"
        f"  {command} study show {study}    # in a second shell"
    )
    if command != "tunewire" and (Path(sys.prefix) / "bin" / "activate").is_file():
        activate = _shown(Path(sys.prefix) / "bin" / "activate")
        print(f"(`. {activate}` puts `tunewire` on the PATH of a shell)")
    return 0


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is inside it (shorter to type)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def tunewire_command() -> str:
    """How a shell runs this installation's `tunewire`: the bare name when it is on the
    PATH, else the script's path (a virtualenv's bin/ is on the PATH only once activated),
    else the module."""
    script = Path(sys.executable).parent / "tunewire"
    found = shutil.which("tunewire")
    if found and script.is_file() and Path(found).resolve() == script.resolve():
        return "tunewire"
    if script.is_file():
        return _shown(script)
    return f"{sys.executable} -m tunewire.client.cli"


if __name__ == "__main__":
    sys.exit(main())
