"""Does tunewire's GP find better configurations in fewer trials than Optuna and Ax, and
stay fast while doing it?

    python -m benchmarks.bench_optimizer            # the full run (26 minutes here on 11-30)
    python -m benchmarks.bench_optimizer --quick    # a smoke run (under a minute)

Four problems (Branin, Hartmann6, a mixed integer/categorical Hartmann6, a conditional
network-shaped problem), each run with every arm and 5 seeds: tunewire gp / random /
sobol through a real gRPC server in its own process (latency measured around the
SuggestTrials RPC at the client), Optuna TPE and GPSampler, Ax (latency around ask()).
Then every model-based arm (tunewire gp, Optuna TPE and GPSampler, Ax) again with 4
asynchronous workers (running trials pending) against its own one-worker run, at equal
evaluations and on to twice the budget (when do 4 workers reach one worker's regret?), and
suggestion latency plus the server's peak RSS with 50..1,000 completed trials. Prints
tables, writes PNGs of regret against evaluations (all arms; 1 vs 4 workers) under
benchmarks/out/, appends to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shlex
import statistics
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
INITIAL_TRIALS = 8  # quasi-random trials before any model, for every arm alike
PARALLEL_WORKERS = 4
# Parallel runs go on to this multiple of the budget, to see when they reach the regret one
# worker has at the budget (their first `budget` evaluations are the same either way).
PARALLEL_EXTENSION = 2
Params = dict[str, Any]


# -- problems -----------------------------------------------------------------------------

_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H6_OPTIMUM = -3.32237


def hartmann6(x: Sequence[float]) -> float:
    inner = (_H6_A * (np.asarray(x, dtype=float) - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


def branin(p: Params) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


# The categorical moves the continuous optimum and adds an offset; the best is "green".
MIXED_SHIFT = {"red": 0.0, "green": -0.1, "blue": 0.1}
MIXED_OFFSET = {"red": 0.3, "green": 0.0, "blue": 0.6}


def mixed(p: Params) -> float:
    s = MIXED_SHIFT[p["color"]]
    x = [min(max(p[f"x{i}"] + s, 0.0), 1.0) for i in range(4)] + [p["i4"] / 9, p["i5"] / 9]
    return hartmann6(x) + MIXED_OFFSET[p["color"]]


@lru_cache(maxsize=1)
def mixed_optimum() -> float:
    """The mixed problem's minimum: continuous minimisation for every integer pair."""
    from scipy.optimize import minimize

    best = math.inf
    rng = np.random.default_rng(0)
    for i4 in range(10):
        for i5 in range(10):
            starts = [[0.20169, 0.150011, 0.476874, 0.275332]] + list(rng.random((3, 4)))
            for start in starts:
                r = minimize(
                    lambda z, a=i4 / 9, b=i5 / 9: hartmann6([*z, a, b]),
                    start,
                    method="L-BFGS-B",
                    bounds=[(0, 1)] * 4,
                )
                best = min(best, float(r.fun))
    return best + MIXED_OFFSET["green"]


CONDITIONAL_LAYER_COST = [0.8, 0.4, 0.15, 0.0, 0.05]
CONDITIONAL_WIDTHS = [256, 128, 64, 32]


def conditional(p: Params) -> float:
    """A validation-loss-like surface: 3 layers of 256/128/64, batch 64, lr 1e-3 are best
    (loss 0); the best learning rate grows with the square root of the batch size."""
    layers = p["layers"]
    lr_opt = -3 + 0.5 * math.log10(p["batch"] / 64)
    loss = 0.5 * (math.log10(p["lr"]) - lr_opt) ** 2 + CONDITIONAL_LAYER_COST[layers]
    loss += 0.02 * (math.log2(p["batch"]) - 6) ** 2
    for i in range(1, layers + 1):
        loss += 0.05 * (math.log2(p[f"width{i}"]) - math.log2(CONDITIONAL_WIDTHS[i - 1])) ** 2
    return loss


@dataclass(frozen=True)
class Problem:
    name: str
    parameters: list[dict[str, Any]]
    evaluate: Callable[[Params], float]
    optimum: Callable[[], float]
    budget: int


def _floats(names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": n, "type": "float", "min": 0.0, "max": 1.0} for n in names]


PROBLEMS = [
    Problem(
        "branin",
        [
            {"name": "x1", "type": "float", "min": -5.0, "max": 10.0},
            {"name": "x2", "type": "float", "min": 0.0, "max": 15.0},
        ],
        branin,
        lambda: 0.397887,
        40,
    ),
    Problem(
        "hartmann6",
        _floats([f"x{i}" for i in range(6)]),
        lambda p: hartmann6([p[f"x{i}"] for i in range(6)]),
        lambda: H6_OPTIMUM,
        40,
    ),
    Problem(
        "mixed",
        _floats([f"x{i}" for i in range(4)])
        + [
            {"name": "i4", "type": "int", "min": 0, "max": 9},
            {"name": "i5", "type": "int", "min": 0, "max": 9},
            {"name": "color", "type": "categorical", "values": ["red", "green", "blue"]},
        ],
        mixed,
        mixed_optimum,
        80,
    ),
    Problem(
        "conditional",
        [
            {"name": "layers", "type": "int", "min": 0, "max": 4},
            *[
                {
                    "name": f"width{i}",
                    "type": "int",
                    "min": 16,
                    "max": 512,
                    "scale": "log",
                    "condition": {"parent": "layers", "min": i},
                }
                for i in range(1, 5)
            ],
            {"name": "lr", "type": "float", "min": 1e-5, "max": 1e-1, "scale": "log"},
            {"name": "batch", "type": "discrete", "values": [16, 32, 64, 128, 256]},
        ],
        conditional,
        lambda: 0.0,
        80,
    ),
]


def active_params(problem: Problem, flat: Params) -> Params:
    """Drops inactive parameters from a flat configuration (peers without conditionals)."""
    out: Params = {}
    for spec in problem.parameters:
        cond = spec.get("condition")
        if cond and not out.get(cond["parent"], -math.inf) >= cond["min"]:
            continue
        out[spec["name"]] = flat[spec["name"]]
    return out


# -- arms -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One arm on one problem with one seed: the value of every evaluation, in order."""

    values: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds per suggested point


def run_async(
    ask: Callable[[], Any], tell: Callable[[Any], float], budget: int, workers: int
) -> Run:
    """Asynchronous workers, simulated deterministically and alike for every arm: `workers`
    trials are always running; the oldest finishes (`tell` evaluates and reports it) and its
    worker asks for the next one. One worker is the plain sequential loop. Latency is
    measured around `ask`."""
    run = Run()
    running: deque[Any] = deque()
    asked = 0
    while len(run.values) < budget:
        while len(running) < workers and asked < budget:
            start = time.perf_counter()
            running.append(ask())
            run.latencies.append(time.perf_counter() - start)
            asked += 1
        run.values.append(tell(running.popleft()))
    return run


class TunewireArm:
    """tunewire through its gRPC API, as a user's workers would see it."""

    def __init__(self, algorithm: str, client: Any, workers: int = 1) -> None:
        self.algorithm = algorithm
        self.client = client
        self.workers = workers
        self.name = f"tunewire {algorithm}" + (f" ({workers} workers)" if workers > 1 else "")
        # Random and Sobol points do not depend on what is running.
        self.models_running_trials = algorithm == "gp"

    def run(self, problem: Problem, seed: int, budget: int) -> Run:
        study = f"{problem.name}-{self.algorithm}-{self.workers}w-{seed}-{time.time_ns()}"
        self.client.create_study(
            study,
            {
                "parameters": problem.parameters,
                "metrics": [{"name": "loss", "goal": "minimize"}],
                "algorithm": self.algorithm,
                "seed": seed,
                "initial_trials": INITIAL_TRIALS,
                "max_trials": budget,
            },
        )

        worker_ids = itertools.cycle(f"w{w}" for w in range(self.workers))

        def ask() -> Any:
            return self.client.suggest(study, worker_id=next(worker_ids), count=1)[0]

        def tell(trial: Any) -> float:
            value = problem.evaluate(trial.params)
            trial.complete({"loss": value})
            return value

        return run_async(ask, tell, budget, self.workers)

    def with_workers(self, workers: int) -> TunewireArm:
        return TunewireArm(self.algorithm, self.client, workers)


class OptunaArm:
    """Optuna's ask/tell interface in this process. With several workers, trials asked and
    not yet told are RUNNING, which GPSampler models (qLogEI over the running trials) and
    TPE treats with its constant liar, the settings Optuna documents for parallel runs."""

    def __init__(self, sampler: str, workers: int = 1) -> None:
        self.sampler = sampler
        self.workers = workers
        self.name = {"tpe": "Optuna TPE", "gp": "Optuna GPSampler"}[sampler] + (
            f" ({workers} workers)" if workers > 1 else ""
        )
        self.models_running_trials = True

    def with_workers(self, workers: int) -> OptunaArm:
        return OptunaArm(self.sampler, workers)

    def run(self, problem: Problem, seed: int, budget: int) -> Run:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if self.sampler == "tpe":
            sampler: Any = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=INITIAL_TRIALS, constant_liar=self.workers > 1
            )
        else:
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=INITIAL_TRIALS)
        study = optuna.create_study(sampler=sampler)

        def ask() -> tuple[Any, Params]:
            trial = study.ask()
            # TPE sees the conditional space as it is (define-by-run); GPSampler cannot
            # model parameters that come and go, so it gets every parameter every time.
            return trial, self._suggest(trial, problem, conditional=self.sampler == "tpe")

        def tell(pending: tuple[Any, Params]) -> float:
            trial, params = pending
            value = problem.evaluate(active_params(problem, params))
            study.tell(trial, value)
            return value

        return run_async(ask, tell, budget, self.workers)

    @staticmethod
    def _suggest(trial: Any, problem: Problem, conditional: bool) -> Params:
        out: Params = {}
        for spec in problem.parameters:
            cond = spec.get("condition")
            if conditional and cond and not out[cond["parent"]] >= cond["min"]:
                continue
            name, kind = spec["name"], spec["type"]
            log = spec.get("scale") == "log"
            if kind == "float":
                out[name] = trial.suggest_float(name, spec["min"], spec["max"], log=log)
            elif kind == "int":
                out[name] = trial.suggest_int(name, spec["min"], spec["max"], log=log)
            else:
                out[name] = trial.suggest_categorical(name, spec["values"])
        return out


class AxArm:
    """Ax's Client in this process. With several workers, trials handed out and not yet
    completed are running, and Ax passes them to its acquisition as pending points."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.name = "Ax (default)" + (f" ({workers} workers)" if workers > 1 else "")
        self.models_running_trials = True

    def with_workers(self, workers: int) -> AxArm:
        return AxArm(workers)

    def run(self, problem: Problem, seed: int, budget: int) -> Run:
        from ax.api.client import Client
        from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

        parameters: list[Any] = []
        for spec in problem.parameters:  # Ax gets the flat space, like GPSampler
            if spec["type"] in ("float", "int"):
                parameters.append(
                    RangeParameterConfig(
                        name=spec["name"],
                        bounds=(spec["min"], spec["max"]),
                        parameter_type=spec["type"],
                        scaling="log" if spec.get("scale") == "log" else "linear",
                    )
                )
            else:
                ordered = spec["type"] == "discrete"
                parameters.append(
                    ChoiceParameterConfig(
                        name=spec["name"],
                        values=spec["values"],
                        parameter_type="int" if ordered else "str",
                        is_ordered=ordered,
                    )
                )
        client = Client(random_seed=seed)
        client.configure_experiment(parameters=parameters, name=f"{problem.name}-{seed}")
        client.configure_optimization(objective="-loss")
        client.configure_generation_strategy(
            initialization_budget=INITIAL_TRIALS, initialize_with_center=False
        )

        def ask() -> tuple[int, Params]:
            ((index, params),) = client.get_next_trials(max_trials=1).items()
            return index, dict(params)

        def tell(pending: tuple[int, Params]) -> float:
            index, params = pending
            value = problem.evaluate(active_params(problem, params))
            client.complete_trial(index, {"loss": value})
            return value

        return run_async(ask, tell, budget, self.workers)


def available_peers(names: Sequence[str]) -> tuple[list[Any], list[str]]:
    """The peer arms whose packages are installed, and a note for each missing one."""
    arms: list[Any] = []
    missing = []
    try:
        import optuna  # noqa: F401

        if "tpe" in names:
            arms.append(OptunaArm("tpe"))
        if "optuna-gp" in names:
            arms.append(OptunaArm("gp"))
    except ImportError:
        missing.append("Optuna TPE and GPSampler skipped: `pip install optuna`")
    if "ax" in names:
        try:
            import ax  # noqa: F401

            arms.append(AxArm())
        except ImportError:
            missing.append("Ax skipped: `pip install ax-platform`")
    return arms, missing


# -- reporting ------------------------------------------------------------------------------


def regret_curve(values: Sequence[float], optimum: float) -> np.ndarray:
    return np.minimum.accumulate(np.asarray(values)) - optimum


def fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.3f}"


def summarise(runs: Sequence[Run], optimum: float, at: int) -> dict[str, float]:
    """Regret after `at` evaluations, and the latency of the suggestions up to then."""
    regrets = [regret_curve(r.values, optimum)[at - 1] for r in runs]
    # Model-based suggestions only: every arm's first INITIAL_TRIALS are quasi-random draws.
    lat = [x for r in runs for x in r.latencies[INITIAL_TRIALS:at]] or [0.0]
    return {
        "median": float(np.median(regrets)),
        "q1": float(np.percentile(regrets, 25)),
        "q3": float(np.percentile(regrets, 75)),
        "lat_p50": statistics.median(lat),
        "lat_last": statistics.median(r.latencies[min(at, len(r.latencies)) - 1] for r in runs),
        "lat_max": max(lat),
    }


def evaluations_to_reach(runs: Sequence[Run], optimum: float, target: float) -> int | None:
    """The first evaluation count at which the median regret over seeds is at or below
    `target` (None if the runs never get there)."""
    median = np.median([regret_curve(r.values, optimum) for r in runs], axis=0)
    reached = np.flatnonzero(median <= target)
    return int(reached[0]) + 1 if len(reached) else None


def quality_table(results: dict[str, dict[str, list[Run]]], problems: Sequence[Problem]) -> str:
    lines = [
        "| problem (budget) | arm | median regret [IQR] | latency p50 / last / max (s) |",
        "|---|---|---|---|",
    ]
    for problem in problems:
        for arm, runs in results[problem.name].items():
            s = summarise(runs, problem.optimum(), len(runs[0].values))
            lines.append(
                f"| {problem.name} ({len(runs[0].values)}) | {arm} | {fmt(s['median'])} "
                f"[{fmt(s['q1'])}, {fmt(s['q3'])}] | {s['lat_p50']:.3f} / {s['lat_last']:.3f} / "
                f"{s['lat_max']:.2f} |"
            )
    return "\n".join(lines)


def parallel_row(problem: Problem, arm: str, seq: Sequence[Run], par: Sequence[Run]) -> str:
    optimum, budget = problem.optimum(), problem.budget
    s1 = summarise(seq, optimum, budget)
    early = summarise(seq, optimum, budget - (PARALLEL_WORKERS - 1))
    s4 = summarise(par, optimum, budget)
    ratio = s4["median"] / s1["median"] if s1["median"] > 0 else math.inf
    # One worker may reach its final median before the budget (a peer that stops
    # improving), so both counts are read off the median curves.
    alone = evaluations_to_reach(seq, optimum, s1["median"]) or budget
    reach = evaluations_to_reach(par, optimum, s1["median"])
    if reach is None:
        reached = f"{alone} / not in {len(par[0].values)} | —"
    else:
        # With evaluations that each take one worker the same time, one worker finishes
        # its `alone` evaluations after `alone` evaluation times; 4 workers finish their
        # first `reach` after ceil(reach / 4).
        sooner = alone / math.ceil(reach / PARALLEL_WORKERS)
        reached = f"{alone} / {reach} ({reach / alone:.2f}x) | {sooner:.1f}x"
    return (
        f"| {problem.name} ({budget}) | {arm} | {fmt(s1['median'])} [{fmt(s1['q1'])}, "
        f"{fmt(s1['q3'])}] | {fmt(early['median'])} [{fmt(early['q1'])}, {fmt(early['q3'])}] | "
        f"{fmt(s4['median'])} [{fmt(s4['q1'])}, {fmt(s4['q3'])}] | {ratio:.2g}x | "
        f"{reached} | {s1['lat_p50']:.3f} / {s4['lat_p50']:.3f} |"
    )


# One panel per problem: its title, known optimum, curves as (label, runs, line style,
# colour or None for the next in matplotlib's cycle), and the budget where the curves run
# past it (None when they end there).
Panel = tuple[str, float, list[tuple[str, Sequence[Run], str, str | None]], int | None]


def _plot_panels(panels: Sequence[Panel], path: Path, width: float, height: float) -> None:
    """Median simple regret against evaluations, one log-scale panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), dpi=80)
    for ax, (title, optimum, curves, budget) in zip(np.atleast_1d(axes), panels, strict=True):
        for label, runs, style, colour in curves:
            regrets = np.array([regret_curve(r.values, optimum) for r in runs])
            median = np.maximum(np.median(regrets, axis=0), 1e-6)
            x = np.arange(1, regrets.shape[1] + 1)
            ax.plot(x, median, style, color=colour, label=label, linewidth=1.3)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("evaluations")
        ax.axvline(INITIAL_TRIALS, color="grey", linewidth=0.6, linestyle=":")
        if budget is not None:
            ax.axvline(budget, color="grey", linewidth=0.6, linestyle="--")
    np.atleast_1d(axes)[0].set_ylabel("median simple regret")
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot(results: dict[str, dict[str, list[Run]]], problems: Sequence[Problem], path: Path) -> None:
    """Every arm's sequential run, one panel per problem."""
    panels: list[Panel] = [
        (
            p.name,
            p.optimum(),
            [(arm, runs, "-", None) for arm, runs in results[p.name].items()],
            None,
        )
        for p in problems
    ]
    _plot_panels(panels, path, 4.2, 3.4)


def plot_parallel(
    results: dict[str, dict[str, list[Run]]],
    parallel: dict[str, dict[str, list[Run]]],
    problems: Sequence[Problem],
    path: Path,
) -> None:
    """Each arm's sequential run (solid) and its parallel run (dashed, same colour, on past
    the sequential run's budget), one panel per problem that ran in parallel."""
    panels: list[Panel] = [
        (
            f"{p.name}: 1 vs {PARALLEL_WORKERS} workers",
            p.optimum(),
            [
                curve
                for i, (arm, par) in enumerate(parallel[p.name].items())
                for curve in (
                    (arm, results[p.name][arm], "-", f"C{i}"),
                    (f"{arm}, {PARALLEL_WORKERS} workers", par, "--", f"C{i}"),
                )
            ],
            p.budget,
        )
        for p in problems
        if parallel.get(p.name)
    ]
    _plot_panels(panels, path, 4.8, 3.6)


# -- scaling --------------------------------------------------------------------------------


def scaling(client_factory: Callable[[], Any], pid: int, levels: Sequence[int], seed: int) -> str:
    """Latency of suggestions and the server's peak RSS as a Hartmann6 study grows.

    History is loaded with AddTrial (completed results at uniform random points); at each
    level three suggestions are timed at the client and completed.
    """
    from benchmarks.common import peak_rss_mb

    problem = PROBLEMS[1]
    client = client_factory()
    study = f"scaling-{time.time_ns()}"
    client.create_study(
        study,
        {
            "parameters": problem.parameters,
            "metrics": [{"name": "loss", "goal": "minimize"}],
            "algorithm": "gp",
            "seed": seed,
        },
    )
    rng = np.random.default_rng(seed)
    # One untimed model-based suggestion first, in a study of its own: the server imports
    # torch and BoTorch lazily.
    warm = f"warm-up-{time.time_ns()}"
    client.create_study(
        warm,
        {
            "parameters": problem.parameters,
            "initial_trials": 2,
            "metrics": [{"name": "loss", "goal": "minimize"}],
        },
    )
    for value in (1.0, 2.0):
        client.add_trial(warm, {f"x{i}": value / 3 for i in range(6)}, {"loss": value})
    client.suggest(warm, worker_id="w0", count=1)[0].complete({"loss": 0.0})
    done = 0
    lines = [
        "| completed trials | suggestion latency p50 / max (s) | server peak RSS (MB) |",
        "|---|---|---|",
    ]
    for level in levels:
        while done < level:
            params = {f"x{i}": float(v) for i, v in enumerate(rng.random(6))}
            client.add_trial(study, params, {"loss": problem.evaluate(params)})
            done += 1
        times = []
        for _ in range(3):
            start = time.perf_counter()
            trial = client.suggest(study, worker_id="w0", count=1)[0]
            times.append(time.perf_counter() - start)
            trial.complete({"loss": problem.evaluate(trial.params)})
            done += 1
        lines.append(
            f"| {level} | {statistics.median(times):.3f} / {max(times):.3f} | "
            f"{peak_rss_mb(pid):.0f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, short budgets")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", default="branin,hartmann6,mixed,conditional")
    parser.add_argument(
        "--arms",
        default="gp,random,sobol,tpe,optuna-gp,ax",
        help="comma-separated: gp,random,sobol,tpe,optuna-gp,ax",
    )
    parser.add_argument(
        "--parallel-problems",
        default="branin,hartmann6",
        help="problems for the 4-worker comparison ('' to skip)",
    )
    parser.add_argument(
        "--scaling",
        default="50,100,200,500,1000",
        help="completed-trial counts for the scaling table ('' to skip)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    # One thread per process (shared 2-core machine); the server inherits this.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("ax").setLevel(logging.ERROR)

    from benchmarks.common import append_results, free_port, start_server_process
    from tunewire.client import TuningClient

    seeds = list(range(1 if args.quick else args.seeds))
    wanted = [p.strip() for p in args.problems.split(",") if p.strip()]
    problems = [p for p in PROBLEMS if p.name in wanted]
    if args.quick:
        problems = [p for p in problems if p.name in ("branin", "conditional")]
        problems = [Problem(p.name, p.parameters, p.evaluate, p.optimum, 12) for p in problems]
    arm_names = [a.strip() for a in args.arms.split(",")]
    peers, missing = available_peers(arm_names)

    OUT.mkdir(parents=True, exist_ok=True)
    scaling_table = ""
    levels = [int(x) for x in args.scaling.split(",") if x.strip()]
    if args.quick:
        levels = [50]
    if levels and "gp" in arm_names:
        port = free_port()
        server = start_server_process(
            f"sqlite:///{OUT / f'bench_scaling_{port}.db'}",
            port,
            OUT / "bench_optimizer_server.log",
            threads=8,
        )
        try:
            scaling_table = scaling(
                lambda: TuningClient(f"127.0.0.1:{port}", timeout=300), server.pid, levels, seed=0
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    port = free_port()
    server = start_server_process(
        f"sqlite:///{OUT / f'bench_optimizer_{port}.db'}",
        port,
        OUT / "bench_optimizer_server.log",
        threads=8,
    )
    parallel_names = [p.strip() for p in args.parallel_problems.split(",") if p.strip()]
    parallel_lines = [
        f"| problem (budget) | arm | 1 worker | 1 worker, {PARALLEL_WORKERS - 1} evaluations "
        f"fewer | {PARALLEL_WORKERS} workers | {PARALLEL_WORKERS} workers / 1, medians | "
        f"evaluations to 1 worker's median, 1 / {PARALLEL_WORKERS} workers | "
        f"time to that regret, 1 worker / {PARALLEL_WORKERS} | "
        f"latency p50, 1 / {PARALLEL_WORKERS} workers (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    raw_path = OUT / "bench_optimizer_runs.json"
    parallel: dict[str, dict[str, list[Run]]] = {}

    def write_raw() -> None:
        def dump(res: dict[str, dict[str, list[Run]]]) -> dict[str, Any]:
            return {
                p: {a: [vars(r) for r in rs] for a, rs in arms_.items()} for p, arms_ in res.items()
            }

        raw_path.write_text(json.dumps({"sequential": dump(results), "parallel": dump(parallel)}))

    results: dict[str, dict[str, list[Run]]] = {}
    try:
        client = TuningClient(f"127.0.0.1:{port}", timeout=120)
        arms: list[Any] = [
            TunewireArm(a, client) for a in ("gp", "random", "sobol") if a in arm_names
        ] + peers
        started = time.monotonic()
        for problem in problems:
            results[problem.name] = {}
            for arm in arms:
                runs = []
                for seed in seeds:
                    runs.append(arm.run(problem, seed, problem.budget))
                results[problem.name][arm.name] = runs
                s = summarise(runs, problem.optimum(), problem.budget)
                print(
                    f"{problem.name:12s} {arm.name:22s} regret {fmt(s['median'])} "
                    f"[{fmt(s['q1'])}, {fmt(s['q3'])}]  latency p50 {s['lat_p50']:.3f}s  "
                    f"({time.monotonic() - started:.0f}s)",
                    flush=True,
                )
                write_raw()
            if problem.name in parallel_names:
                parallel[problem.name] = {}
                for arm in arms:
                    if not arm.models_running_trials:
                        continue
                    runs = [
                        arm.with_workers(PARALLEL_WORKERS).run(
                            problem, seed, PARALLEL_EXTENSION * problem.budget
                        )
                        for seed in seeds
                    ]
                    parallel[problem.name][arm.name] = runs
                    parallel_lines.append(
                        parallel_row(problem, arm.name, results[problem.name][arm.name], runs)
                    )
                    print(parallel_lines[-1], f"({time.monotonic() - started:.0f}s)", flush=True)
                    write_raw()
        table = quality_table(results, problems)
        plot_path = OUT / "bench_optimizer_regret.png"
        if problems:  # a scaling-only run (--problems none) has nothing to plot
            plot(results, problems, plot_path)
        parallel_table = "\n".join(parallel_lines)
        parallel_plot = OUT / "bench_optimizer_parallel.png"
        if parallel:
            plot_parallel(results, parallel, problems, parallel_plot)
    finally:
        server.terminate()
        server.wait(timeout=30)

    from benchmarks.common import versions

    notes = "; ".join(missing) if missing else "all peers installed"
    text = (
        f"{len(seeds)} seed(s); first {INITIAL_TRIALS} trials quasi-random in every arm; "
        f"regret = best value found - known optimum. Optuna GPSampler and Ax get the "
        f"conditional problem's flat space (inactive widths ignored), TPE its conditional "
        f"one. Peers: {notes}. Versions: "
        f"{versions('torch', 'botorch', 'gpytorch', 'optuna', 'ax-platform')}\n\n{table}\n"
        + (
            f"\nParallel: {PARALLEL_WORKERS} asynchronous workers against 1, every model-based "
            f"arm, same evaluation count; each suggestion is made with {PARALLEL_WORKERS - 1} "
            f"trials running (tunewire gp and Optuna GPSampler: qLogEI over them; Ax: pending "
            f"points; TPE: constant liar). Median regret [IQR] at the budget; the third column "
            f"is the sequential run {PARALLEL_WORKERS - 1} evaluations before the budget, which "
            f"is as many results as the parallel run's last suggestion had seen. The parallel "
            f"runs go on to {PARALLEL_EXTENSION}x the budget: the next column is the first "
            f"evaluation count at which the median regret over seeds is at or below one "
            f"worker's at the budget, for 1 and for {PARALLEL_WORKERS} workers, and the one "
            f"after it how much sooner {PARALLEL_WORKERS} workers get there in wall-clock "
            f"time when every evaluation takes a worker the same time (n1 evaluation times "
            f"for one worker, ceil(n{PARALLEL_WORKERS} / {PARALLEL_WORKERS}) for "
            f"{PARALLEL_WORKERS}).\n\n"
            f"{parallel_table}\n"
            if parallel
            else ""
        )
        + (
            f"\nScaling (Hartmann6, history loaded with AddTrial; SQLite):\n\n{scaling_table}\n"
            if scaling_table
            else ""
        )
        + f"\nPlots: {plot_path.relative_to(OUT.parent.parent)}"
        + (f", {parallel_plot.relative_to(OUT.parent.parent)}" if parallel else "")
        + "\n"
    )
    print("\n" + text)
    if not args.no_record:
        command = "python -m benchmarks.bench_optimizer" + (
            " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
        )
        append_results(
            "bench_optimizer", command, text, packages=("torch", "botorch", "optuna", "ax-platform")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
