"""Records full learning curves of the trainer's built-in tasks for replay
(benchmarks/replay.py), with the trainer's own data splits, networks and training loop.

    python -m benchmarks.record_curves                              # every task, defaults
    python -m benchmarks.record_curves --tasks digits-mlp --configs 64 --workers 2
    python -m benchmarks.record_curves --tasks mnist-cnn --device cuda --workers 4 \\
        --deadline-seconds 480
    python -m benchmarks.record_curves --quick                      # a smoke run

Each task's design is its default search space (trainer/tasks/<task>.yaml) sampled by
anchors (the centre, every parameter at its minimum, at its maximum, and the 8 corners of
hidden_layers x lr x batch_size with the rest at the centre) then a scrambled Sobol sequence,
decoded by the optimiser's own encoding (log scales, integer bins, conditional parameters
absent when inactive). Every configuration trains for each seed to the task's max_epochs
with the trainer's patience switched off (patience = max_epochs), so the whole curve exists.

A recording resumes: the task's file under --out is rewritten atomically every
--save-every seconds and at the end, and runs already in it are skipped. --deadline-seconds
stops handing out runs, aborts the running ones at their next epoch and writes the files
before that time. Runs aborted by the deadline are not kept (they are recorded next time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.curves import CURVES_DIR, TEST_METRICS, CurveTable, curve_file
from tunewire.server.algorithms.encoding import decode_unit
from tunewire.server.algorithms.random_search import sobol_points
from tunewire.server.domain.space import Params, SearchSpace

TASKS = ("digits-mlp", "breast-cancer-mlp", "wine-mlp", "diabetes-mlp", "mnist-cnn")
DEFAULT_CONFIGS = "512,mnist-cnn=128"
DESIGN_SEED = 0
# The knobs whose extremes make the design's corners (every task has them).
CORNER_KNOBS = ("hidden_layers", "lr", "batch_size")
# Seconds kept after the last run is aborted, to write the files before the deadline.
DEADLINE_MARGIN_S = 15.0
QUICK_OUT = Path(__file__).resolve().parent / "out" / "curves-quick"


# -- the design ---------------------------------------------------------------------------
def design(space: SearchSpace, count: int, seed: int = DESIGN_SEED) -> list[Params]:
    """`count` configurations: the anchors, then scrambled Sobol points. A longer design
    starts with the shorter one, so a recording can be extended."""
    d = len(space)
    centre = np.full(d, 0.5)
    anchors = [centre, np.zeros(d), np.ones(d)]
    knobs = [space.names.index(k) for k in CORNER_KNOBS if k in space]
    for corner in range(2 ** len(knobs)):
        point = centre.copy()
        for bit, column in enumerate(knobs):
            point[column] = float((corner >> bit) & 1)
        anchors.append(point)
    units = anchors[:count]
    if count > len(units):
        units += list(sobol_points(d, seed, 0, count - len(units)))
    return [decode_unit(space, u) for u in units]


def anchor_count(space: SearchSpace) -> int:
    return 3 + 2 ** sum(k in space for k in CORNER_KNOBS)


# -- one run, in a worker process --------------------------------------------------------
class DeadlineReached(Exception):
    """The recording's deadline passed during a run: the run is dropped, not recorded."""


@dataclass
class RunRecord:
    """One configuration trained with one seed: per-epoch arrays of max_epochs entries,
    NaN after a divergence."""

    task: str
    design_index: int
    seed_slot: int
    curves: dict[str, np.ndarray]
    pretrain_seconds: float
    n_params: int
    reason: str = ""

    @property
    def infeasible(self) -> bool:
        return bool(self.reason)


class EpochRecorder:
    """Takes the place of the server for one run: `send` receives exactly what the
    trainer's Reporter would send after each epoch, adds the test split's loss and score
    of the weights at that epoch (the trainer's own `evaluate`), and times each epoch.
    As the Reporter's progress sink it sees the pretraining epochs end."""

    def __init__(self, model: Any, data: Any, device: Any, epochs: int, cutoff: float) -> None:
        self.model, self.data, self.device = model, data, device
        # On CPU with one torch thread every operation runs in this thread, so its CPU
        # time is the epoch's cost whatever else the machine runs; on a GPU work runs
        # asynchronously, so wall-clock time is the cost.
        self.clock = time.perf_counter if device.type == "cuda" else time.thread_time
        self.x_test = data.x_test.to(device)
        self.y_test = data.y_test.to(device)
        self.cutoff = cutoff
        self.precision: Any = None
        self.curves: dict[str, np.ndarray] = {}
        self.epochs = epochs
        self.reported = 0
        self.started = self.mark = self.clock()
        self.pretrain_seconds = 0.0

    def row(self, name: str) -> np.ndarray:
        if name not in self.curves:
            self.curves[name] = np.full(self.epochs, np.nan, dtype=np.float32)
        return self.curves[name]

    def send(self, step: int, metrics: Mapping[str, float], last_step: bool) -> bool:
        from tunewire.trainer.tasks.training import evaluate

        self.row("epoch_seconds")[step - 1] = self.clock() - self.mark
        for name, value in metrics.items():
            self.row(name)[step - 1] = value
        loss, score = evaluate(self.model, self.x_test, self.y_test, self.data, self.precision)
        test_loss, test_score = TEST_METRICS[self.data.is_classification]
        self.row(test_loss)[step - 1] = loss
        self.row(test_score)[step - 1] = score
        self.reported = step
        if not last_step and time.time() > self.cutoff:
            raise DeadlineReached
        self.mark = self.clock()
        return False

    def diverged(self) -> None:
        """The seconds of the epoch (or pretraining) the run diverged in."""
        now = self.clock()
        if self.reported < self.epochs:
            self.row("epoch_seconds")[self.reported] = now - self.mark

    # The Reporter's progress sink: status lines before the first report end pretraining
    # epochs.
    def epoch(
        self, step: int, total: int, metrics: Mapping[str, float], best: float | None
    ) -> None:
        """Nothing: `send` records every epoch."""

    def status(self, text: str) -> None:
        if self.reported == 0:
            self.mark = self.clock()
            self.pretrain_seconds = self.mark - self.started
            if time.time() > self.cutoff:
                raise DeadlineReached


def record_run(
    task_name: str,
    design_index: int,
    params: Params,
    seed_slot: int,
    seed: int,
    device_name: str,
    max_epochs: int,
    cutoff: float,
) -> RunRecord | None:
    """Trains one configuration as `tunewire train` would (BuiltinTask.__call__: the same
    parsing, data split, seeding, network and train_network) with patience off; None when
    the deadline passed before the run ended."""
    import torch

    from tunewire.trainer.errors import TrialInfeasible
    from tunewire.trainer.reporter import Reporter
    from tunewire.trainer.tasks import BUILTIN_TASKS
    from tunewire.trainer.tasks.datasets import load_splits
    from tunewire.trainer.tasks.hyperparams import parse_network_config
    from tunewire.trainer.tasks.models import build_cnn, build_mlp, count_parameters
    from tunewire.trainer.tasks.training import _Precision, train_network

    if time.time() > cutoff:
        return None
    task = BUILTIN_TASKS[task_name]
    device = torch.device(device_name)
    trial = dict(params, max_epochs=max_epochs, patience=max_epochs)
    config = parse_network_config(
        trial, task=task.name, defaults=task.defaults, convolutional=task.convolutional
    )
    data = load_splits(task.dataset, seed)
    torch.manual_seed(seed)
    if task.convolutional:
        model = build_cnn(data.input_shape, data.n_outputs, config)
    else:
        model = build_mlp(data.n_inputs, data.n_outputs, config)
    recorder = EpochRecorder(model, data, device, config.max_epochs, cutoff)
    reporter = Reporter(device=device, seed=seed, send=recorder.send, progress=recorder)
    # The trainer's evaluation settings (mixed precision off, as `tunewire train` defaults).
    recorder.precision = _Precision(reporter)
    reason = ""
    try:
        train_network(model, data, config, reporter)
    except DeadlineReached:
        return None
    except TrialInfeasible as exc:
        recorder.diverged()
        reason = str(exc)
    except torch.cuda.OutOfMemoryError:
        recorder.diverged()
        reason = "CUDA out of memory"
    names = ["epoch_seconds", "val_loss", "train_loss"]
    names += ["val_accuracy" if data.is_classification else "val_rmse"]
    names += list(TEST_METRICS[data.is_classification])
    curves = {n: recorder.row(n) for n in names}
    return RunRecord(
        task_name,
        design_index,
        seed_slot,
        curves,
        recorder.pretrain_seconds,
        count_parameters(model),
        reason,
    )


def _start_worker(device: str, threads: int | None) -> None:
    import torch

    from tunewire.trainer.devices import prepare_device

    where = torch.device(device)
    prepare_device(where, threads)
    if where.type == "cuda":
        # CUDA, cuBLAS and cuDNN initialise on first use: not in the first run's epoch 1.
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten()).to(where)
        net(torch.zeros(2, 1, 8, 8, device=where)).sum().backward()
        torch.cuda.synchronize(where)


# -- the tables ---------------------------------------------------------------------------
@dataclass
class TaskRecording:
    """The runs of one task so far, keyed by design index, and what is still to do."""

    task: str
    path: Path
    space_dicts: list[dict[str, Any]]
    max_epochs: int
    seeds: tuple[int, ...]
    count: int
    configs: list[Params]
    meta: dict[str, Any]
    runs: dict[tuple[int, int], RunRecord] = field(default_factory=dict)
    dirty: bool = False

    def todo(self) -> list[tuple[int, int]]:
        return [
            (i, s)
            for i in range(self.count)
            for s in range(len(self.seeds))
            if (i, s) not in self.runs
        ]

    def complete_configs(self) -> int:
        return sum(
            all((i, s) in self.runs for s in range(len(self.seeds))) for i in range(self.count)
        )

    def add(self, run: RunRecord) -> None:
        self.runs[(run.design_index, run.seed_slot)] = run
        self.dirty = True

    def table(self) -> CurveTable:
        rows = sorted({i for i, _ in self.runs})
        n, s, e = len(rows), len(self.seeds), self.max_epochs
        example = next(iter(self.runs.values()))
        curves = {k: np.full((n, s, e), np.nan, dtype=np.float32) for k in example.curves}
        pretrain = np.full((n, s), np.nan, dtype=np.float32)
        done = np.zeros((n, s), dtype=bool)
        infeasible = np.zeros((n, s), dtype=bool)
        n_params = np.zeros(n, dtype=np.int64)
        reasons = {}
        for r, i in enumerate(rows):
            for slot in range(s):
                run = self.runs.get((i, slot))
                if run is None:
                    continue
                for k, v in run.curves.items():
                    curves[k][r, slot] = v
                pretrain[r, slot] = run.pretrain_seconds
                done[r, slot] = True
                infeasible[r, slot] = run.infeasible
                n_params[r] = run.n_params
                if run.reason:
                    reasons[f"{r},{slot}"] = run.reason
        return CurveTable(
            task=self.task,
            max_epochs=self.max_epochs,
            classification=TEST_METRICS[True][1] in curves,
            seeds=self.seeds,
            parameters=self.space_dicts,
            params=[self.configs[i] for i in rows],
            design_index=np.array(rows, dtype=np.int32),
            curves=curves,
            pretrain_seconds=pretrain,
            done=done,
            infeasible=infeasible,
            n_params=n_params,
            reasons=reasons,
            meta=self.meta,
        )

    def save(self) -> None:
        if self.runs:
            self.table().save(self.path)
        self.dirty = False


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("tunewire", "torch", "numpy", "scikit-learn", "mlxtend"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"cpu: {model} ({os.cpu_count()} logical cores)"


def open_recording(
    task_name: str, out: Path, count: int, seeds: int, max_epochs: int | None
) -> TaskRecording:
    """The recording of a task: its design and the runs already in its file.

    Raises:
        SystemExit: the file holds another space, epochs, seeds or design.
    """
    from tunewire.trainer.tasks import BUILTIN_TASKS

    task = BUILTIN_TASKS[task_name]
    spec = task.default_spec()
    task.check_spec(spec)
    space = SearchSpace.from_dicts(spec["parameters"])
    epochs = max_epochs or task.defaults.max_epochs
    path = curve_file(task_name, out)
    old = CurveTable.load(path) if path.exists() else None
    # A file from a longer recording keeps its extra rows: the design covers them.
    points = max([count, *(int(i) + 1 for i in old.design_index)] if old else [count])
    recording = TaskRecording(
        task=task_name,
        path=path,
        space_dicts=list(spec["parameters"]),
        max_epochs=epochs,
        seeds=tuple(range(seeds)),
        count=count,
        configs=design(space, points),
        meta={
            "design": {
                "kind": "anchors, then scrambled Sobol points (benchmarks/record_curves.py)",
                "seed": DESIGN_SEED,
                "anchors": anchor_count(space),
            },
            "patience": "off (patience = max_epochs)",
        },
    )
    if old is None:
        return recording
    same = (
        old.parameters == recording.space_dicts
        and old.max_epochs == epochs
        and old.seeds == recording.seeds
    )
    if not same:
        raise SystemExit(
            f"{path} holds another recording (space, epochs or seeds differ): "
            "move it away or give another --out"
        )
    for r, i in enumerate(old.design_index.tolist()):
        if old.params[r] != recording.configs[i]:
            raise SystemExit(f"{path}: row {r} is not design point {i}: another design")
        for slot in range(len(old.seeds)):
            if not old.done[r, slot]:
                continue
            recording.runs[(i, slot)] = RunRecord(
                task_name,
                i,
                slot,
                {k: v[r, slot] for k, v in old.curves.items()},
                float(old.pretrain_seconds[r, slot]),
                int(old.n_params[r]),
                old.reasons.get(f"{r},{slot}", ""),
            )
    recording.meta = dict(old.meta, **recording.meta)
    return recording


def interleave(recordings: Sequence[TaskRecording]) -> Iterator[tuple[TaskRecording, int, int]]:
    """Runs still to do, every task advancing at the same fraction of its design, so a
    deadline leaves each task with a Sobol prefix-like subset."""
    queue = []
    for rec in recordings:
        todo = rec.todo()
        for k, (i, s) in enumerate(todo):
            queue.append(((k + 1) / len(todo), rec.task, i, s, rec))
    queue.sort(key=lambda q: q[:2])
    for _, _, i, s, rec in queue:
        yield rec, i, s


# -- the loop -----------------------------------------------------------------------------
def record(
    tasks: Sequence[str],
    counts: Mapping[str, int],
    *,
    out: Path,
    seeds: int = 2,
    workers: int = 1,
    device: str = "cpu",
    threads: int | None = 1,
    max_epochs: int | None = None,
    deadline_seconds: float | None = None,
    save_every: float = 60.0,
    command: str = "",
    log: Any = print,
) -> dict[str, TaskRecording]:
    """Records the tasks' curves; returns the recordings (also written under `out`).

    Args:
        counts: configurations per task.
        workers: processes training at once (1: in this process).
        device: ``cpu``, ``cuda``/``cuda:N`` or ``auto``; every worker uses it.
        threads: torch threads per worker (None: leave this process's setting).
        max_epochs: overrides every task's own (for smoke runs).
        deadline_seconds: stop and write everything before this many seconds from now.
    """
    from tunewire.trainer.devices import resolve_device

    started = time.time()
    device = str(resolve_device(device))
    if workers > 1:
        # Worker processes inherit these: one BLAS / OpenMP thread each unless told.
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads or 1)
    cutoff = started + deadline_seconds - DEADLINE_MARGIN_S if deadline_seconds else float("inf")
    recordings = {t: open_recording(t, out, counts[t], seeds, max_epochs) for t in tasks}
    before = {t: len(r.runs) for t, r in recordings.items()}
    session = {
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
        "device": _device_description(device),
        "workers": workers,
        "threads_per_worker": threads,
        "versions": _versions(),
    }
    for rec in recordings.values():
        rec.meta.setdefault("sessions", []).append(session)
    # The arguments of record_run for every run still to do, in the order to run them.
    jobs = (
        (rec.task, i, rec.configs[i], s, rec.seeds[s], device, rec.max_epochs, cutoff)
        for rec, i, s in interleave(list(recordings.values()))
    )
    last_save = time.time()

    def absorb(result: RunRecord | None) -> None:
        if result is not None:
            recordings[result.task].add(result)

    def save(final: bool = False) -> None:
        nonlocal last_save
        for rec in recordings.values():
            new = len(rec.runs) - before[rec.task]
            session_seconds = time.time() - started
            rec.meta["sessions"][-1].update(runs=new, wall_seconds=round(session_seconds, 1))
            rec.meta["recording_seconds"] = round(
                sum(s.get("wall_seconds", 0.0) for s in rec.meta["sessions"]), 1
            )
            if rec.dirty or final:
                rec.save()
        last_save = time.time()
        log(progress_line(recordings, started))

    try:
        if workers <= 1:
            if threads:
                _start_worker(device, threads)
            for job in jobs:
                absorb(record_run(*job))
                if time.time() - last_save > save_every:
                    save()
                if time.time() > cutoff:
                    break
        else:
            context = get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=_start_worker, initargs=(device, threads)
            ) as pool:
                running: set[Future[RunRecord | None]] = set()
                while True:
                    while len(running) < 2 * workers and time.time() < cutoff:
                        queued = next(jobs, None)
                        if queued is None:
                            break
                        running.add(pool.submit(record_run, *queued))
                    if not running:
                        break
                    finished, running = wait(running, timeout=5.0, return_when=FIRST_COMPLETED)
                    for future in finished:
                        absorb(future.result())
                    if time.time() - last_save > save_every:
                        save()
    finally:
        save(final=True)
    return recordings


def progress_line(recordings: Mapping[str, TaskRecording], started: float) -> str:
    parts = [f"{r.task} {r.complete_configs()}/{r.count}" for r in recordings.values()]
    return f"[{time.time() - started:6.0f} s] configurations recorded: " + ", ".join(parts)


def parse_counts(text: str, tasks: Sequence[str]) -> dict[str, int]:
    """``512,mnist-cnn=128`` -> 512 for every task but mnist-cnn."""
    default, named = None, {}
    for part in text.split(","):
        name, eq, number = part.strip().rpartition("=")
        if eq:
            named[name] = int(number)
        else:
            default = int(number)
    unknown = set(named) - set(TASKS)
    if unknown:
        raise SystemExit(f"--configs names unknown tasks {sorted(unknown)}; tasks: {TASKS}")
    counts = {t: named.get(t, default) for t in tasks}
    missing = [t for t, c in counts.items() if c is None]
    if missing:
        raise SystemExit(f"--configs gives no count for {missing}")
    return {t: int(c) for t, c in counts.items() if c is not None}


def summary(recordings: Mapping[str, TaskRecording]) -> str:
    lines = [
        "| task | configurations (all seeds) | runs | diverged | median s / run | "
        "median epoch s | file MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for rec in recordings.values():
        if not rec.runs:
            lines.append(f"| {rec.task} | 0 | 0 | | | | |")
            continue
        table = rec.table()
        per_run = table.pretrain_seconds + np.nansum(table.curves["epoch_seconds"], axis=2)
        size = rec.path.stat().st_size / 1e6 if rec.path.exists() else float("nan")
        lines.append(
            f"| {rec.task} | {int(table.done.all(axis=1).sum())} | {int(table.done.sum())} | "
            f"{int(table.infeasible.sum())} | {float(np.nanmedian(per_run[table.done])):.2f} | "
            f"{float(np.nanmedian(table.curves['epoch_seconds'])):.3f} | {size:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="configurations per task: N, or N,task=M,... (default %(default)s)",
    )
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..N-1")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: each task's")
    parser.add_argument("--workers", type=int, default=1, help="training processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--out", type=Path, default=None, help=f"default {CURVES_DIR}")
    parser.add_argument("--deadline-seconds", type=float, default=None)
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run into benchmarks/out/")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "-m", "benchmarks.record_curves", *given])
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise SystemExit(f"unknown tasks {sorted(unknown)}; tasks: {', '.join(TASKS)}")
    if args.quick:
        tasks = tasks if args.tasks != ",".join(TASKS) else ["digits-mlp"]
        args.configs, args.max_epochs = "4", args.max_epochs or 2
    out = args.out or (QUICK_OUT if args.quick else CURVES_DIR)
    counts = parse_counts(args.configs, tasks)
    recordings = record(
        tasks,
        counts,
        out=out,
        seeds=args.seeds,
        workers=args.workers,
        device=args.device,
        threads=args.threads,
        max_epochs=args.max_epochs,
        deadline_seconds=args.deadline_seconds,
        save_every=args.save_every,
        command=command,
        log=lambda line: print(line, flush=True),
    )
    print(summary(recordings))
    print(json.dumps({t: str(r.path) for t, r in recordings.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
