"""A simulated clock for asynchronous workers (BENCHMARKS.md: "Many workers and anytime
tuning"): K workers ask an optimiser for a trial, train it for a recorded or random
duration and tell it the result; time advances to the next worker to finish instead of
sleeping, so a run is exact, reproducible and fast. Optimisers are driven alike through
`Session`: tunewire through a real server and its client, Optuna in this process."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from benchmarks.bench_optimizer import OptunaArm, Problem, active_params
from benchmarks.tabular import TabularTask

INITIAL_TRIALS = 8
Params = dict[str, Any]


# -- the simulated clock ----------------------------------------------------------------------
@dataclass
class Run:
    """One arm with K workers on one task and seed: each evaluation in the order it
    finished, with its simulated finishing time and its regret."""

    times: list[float] = field(default_factory=list)
    regrets: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def best(self) -> np.ndarray:
        return np.minimum.accumulate(np.asarray(self.regrets))

    def best_at_time(self, t: float) -> float:
        """The best regret finished by simulated time t (inf before the first)."""
        done = np.searchsorted(np.asarray(self.times), t, side="right")
        return float(self.best()[done - 1]) if done else float("inf")


class Session(Protocol):
    """An optimiser as the clock drives it: ask for a worker, tell a finished trial."""

    def ask(self, worker: int) -> tuple[Any, Params]: ...

    def tell(self, handle: Any, value: float) -> None: ...


@dataclass
class Task:
    """A problem as the clock sees it: parameters, a (possibly noisy) evaluation per seed,
    and the regret of a configuration."""

    name: str
    parameters: list[dict[str, Any]]
    evaluator: Callable[[int], Callable[[Params], float]]
    regret: Callable[[Params, float], float]


def synthetic(problem: Problem) -> Task:
    optimum = problem.optimum()
    return Task(
        problem.name,
        problem.parameters,
        lambda seed: problem.evaluate,
        lambda params, value: value - optimum,
    )


def tabular(table: TabularTask) -> Task:
    return Task(
        table.name,
        table.parameters,
        table.evaluator,
        lambda params, value: table.regret(params),
    )


def durations_of(seed: int, budget: int) -> np.ndarray:
    """How long each evaluation of a run takes, in the order they are asked for."""
    return np.random.default_rng([seed, 0xC10C]).uniform(0.5, 1.5, size=budget)


def finishing_times(seed: int, workers: int, budget: int) -> list[float]:
    """When the evaluations of a run finish, in order, with `run_clock`'s durations and
    no time spent asking: what an optimiser that loses nothing by running in parallel
    (its regret a function of the number of finished evaluations) would see."""
    durations = durations_of(seed, budget)
    running = [(float(durations[i]), i) for i in range(min(workers, budget))]
    heapq.heapify(running)
    asked, out = len(running), []
    while running:
        now, _ = heapq.heappop(running)
        out.append(now)
        if asked < budget:
            heapq.heappush(running, (now + float(durations[asked]), asked))
            asked += 1
    return out


def run_clock(session: Session, task: Task, seed: int, workers: int, budget: int) -> Run:
    """K workers on a simulated clock: each asks, trains for its evaluation's duration,
    tells, and asks again; the earliest to finish goes first. The regret of an evaluation
    is that of the best configuration found so far (for noisy tables, the configuration
    with the best observed value, scored by its mean)."""
    evaluate = task.evaluator(seed)
    durations = durations_of(seed, budget)
    run = Run()
    running: list[tuple[float, int, int, Any, Params]] = []
    asked = 0
    best_value, best_regret = float("inf"), float("inf")

    def ask(worker: int, now: float) -> None:
        nonlocal asked
        start = time.perf_counter()
        handle, params = session.ask(worker)
        run.latencies.append(time.perf_counter() - start)
        heapq.heappush(running, (now + durations[asked], asked, worker, handle, params))
        asked += 1

    for worker in range(min(workers, budget)):
        ask(worker, 0.0)
    while running:
        now, _, worker, handle, params = heapq.heappop(running)
        value = evaluate(params)
        session.tell(handle, value)
        if value < best_value:
            best_value, best_regret = value, task.regret(params, value)
        run.times.append(now)
        run.regrets.append(best_regret)
        if asked < budget:
            ask(worker, now)
    return run


# -- arms -------------------------------------------------------------------------------------
class TunewireSession:
    def __init__(self, client: Any, algorithm: str, task: Task, seed: int) -> None:
        self.client = client
        self.study = f"{task.name.replace(':', '-')}-{algorithm}-{seed}-{time.time_ns()}"
        client.create_study(
            self.study,
            {
                "parameters": task.parameters,
                "metrics": [{"name": "loss", "goal": "minimize"}],
                "algorithm": algorithm,
                "seed": seed,
                "initial_trials": INITIAL_TRIALS,
            },
        )

    def ask(self, worker: int) -> tuple[Any, Params]:
        trial = self.client.suggest(self.study, worker_id=f"w{worker}")[0]
        return trial, dict(trial.params)

    def tell(self, handle: Any, value: float) -> None:
        handle.complete({"loss": value})


class OptunaSession:
    """Optuna's ask/tell: trials asked and not told are RUNNING (GPSampler models them;
    TPE imputes them with its constant liar)."""

    def __init__(self, sampler: str, task: Task, seed: int, workers: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        if sampler == "tpe":
            chosen: Any = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=INITIAL_TRIALS, constant_liar=workers > 1
            )
        else:
            chosen = optuna.samplers.GPSampler(seed=seed, n_startup_trials=INITIAL_TRIALS)
        self.study = optuna.create_study(sampler=chosen)
        self.problem = Problem(task.name, task.parameters, lambda p: 0.0, lambda: 0.0, 0)
        self.conditional = sampler == "tpe"

    def ask(self, worker: int) -> tuple[Any, Params]:
        trial = self.study.ask()
        params = OptunaArm._suggest(trial, self.problem, conditional=self.conditional)
        return trial, active_params(self.problem, params)

    def tell(self, handle: Any, value: float) -> None:
        self.study.tell(handle, value)


ARMS: dict[str, Callable[[Any, Task, int, int], Session]] = {
    "tunewire gp": lambda ctx, task, seed, k: TunewireSession(ctx, "gp", task, seed),
    "random": lambda ctx, task, seed, k: TunewireSession(ctx, "random", task, seed),
    "Optuna GPSampler": lambda ctx, task, seed, k: OptunaSession("gp", task, seed, k),
    "Optuna TPE": lambda ctx, task, seed, k: OptunaSession("tpe", task, seed, k),
}


# -- summaries --------------------------------------------------------------------------------
def median_at_evaluations(runs: Sequence[Run], n: int) -> float:
    return float(np.median([r.best()[min(n, len(r.regrets)) - 1] for r in runs]))


def time_to_reach(runs: Sequence[Run], target: float) -> float | None:
    """The first simulated time at which the median over seeds is at or below target."""
    moments = sorted({t for r in runs for t in r.times})
    for t in moments:
        if np.median([r.best_at_time(t) for r in runs]) <= target:
            return t
    return None


def fmt(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "not reached"
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.3f}"
