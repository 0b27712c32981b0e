"""Replays recorded learning curves (benchmarks/curves.py) on a simulated clock: K
asynchronous workers each ask an optimiser for a trial, "train" it epoch by epoch from the
table, report every epoch, obey stop decisions and complete, while time advances by the
recorded seconds of each epoch (BENCHMARKS.md: "Many workers and anytime tuning").

tunewire is driven through a real server and its Python client, exactly as the trainer's
worker drives it (step = epoch from 1, `last_step` on the final epoch, the trainer's final
metrics at completion); Optuna's TPE with its pruners runs in this process on the same
tables and clock through the same `CurveSession` interface.

A suggested configuration trains as the nearest recorded one (same active parameters,
distance in the optimiser's unit-cube coordinates; see `CurveTable.nearest`): the
optimisers search the task's real, conditional space, and every number reported is one a
real training run produced. Each trial draws one of the recorded training seeds.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from benchmarks.curves import CurveTable
from benchmarks.simclock import INITIAL_TRIALS
from tunewire.server.domain.space import ParameterKind, Params, SearchSpace


class CurveSession(Protocol):
    """An optimiser with early stopping as the replay drives it."""

    def ask(self, worker: int) -> tuple[Any, Params]:
        """A trial handle and its configuration (inactive parameters absent)."""
        ...

    def report(
        self, handle: Any, epoch: int, metrics: Mapping[str, float], last_step: bool
    ) -> bool:
        """One epoch's report; True when the trial must stop."""
        ...

    def complete(self, handle: Any, metrics: Mapping[str, float]) -> None:
        """The trial ended (ran out its epochs or was stopped) with these final metrics."""
        ...

    def infeasible(self, handle: Any, reason: str) -> None:
        """The trial diverged."""
        ...


@dataclass
class ReplayedTrial:
    """One trial as the simulated worker ran it."""

    worker: int
    row: int
    seed_slot: int
    started: float
    handle: Any = field(default=None, repr=False)
    ended: float = float("nan")
    epochs: int = 0
    stopped: bool = False
    infeasible: bool = False
    val_loss: float = float("inf")


@dataclass
class Replay:
    """One arm with K workers on one table and seed.

    Attributes:
        times, regrets: after each finished trial, the simulated time and the regret of the
            incumbent (the finished trial with the lowest validation loss, scored by its
            configuration's expected test error at the length it trained; see
            `CurveTable.expected_test_error`). Not monotone: a better validation loss
            may come with a worse test error.
        epochs_trained: epochs reported by the budget, all workers together.
        busy_seconds: simulated training seconds by the budget, all workers together.
    """

    budget_seconds: float
    times: list[float] = field(default_factory=list)
    regrets: list[float] = field(default_factory=list)
    trials: list[ReplayedTrial] = field(default_factory=list)
    epochs_trained: int = 0
    busy_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def regret_at(self, t: float) -> float:
        """The incumbent's regret at simulated time t (inf before any trial finished)."""
        done = int(np.searchsorted(np.asarray(self.times), t, side="right"))
        return self.regrets[done - 1] if done else float("inf")

    @property
    def final_regret(self) -> float:
        return self.regrets[-1] if self.regrets else float("inf")


def replay(
    session: CurveSession,
    table: CurveTable,
    *,
    seed: int,
    workers: int,
    budget_seconds: float,
    max_trials: int | None = None,
) -> Replay:
    """Runs `workers` simulated workers until `budget_seconds` of simulated time (or
    `max_trials` trials were asked). Events are processed in time order (ties by the order
    they were scheduled), so a replay is deterministic for a deterministic optimiser."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    epoch_seconds = np.nan_to_num(table.curves["epoch_seconds"], nan=0.0)
    pretrain_seconds = np.nan_to_num(table.pretrain_seconds, nan=0.0)
    result = Replay(budget_seconds)
    events: list[tuple[float, int, int, ReplayedTrial]] = []
    order = itertools.count()
    best_val = float("inf")

    def start(worker: int, now: float) -> None:
        if now >= budget_seconds or (max_trials is not None and len(result.trials) >= max_trials):
            return
        began = time.perf_counter()
        handle, params = session.ask(worker)
        result.latencies.append(time.perf_counter() - began)
        row = table.nearest(params)
        slot = int(rng.integers(len(table.seeds)))
        trial = ReplayedTrial(worker, row, slot, now, handle)
        result.trials.append(trial)
        first = pretrain_seconds[row, slot] + epoch_seconds[row, slot, 0]
        heapq.heappush(events, (now + first, next(order), worker, trial))

    def finish(trial: ReplayedTrial, now: float) -> None:
        nonlocal best_val
        trial.ended = now
        if trial.infeasible:
            return
        if trial.val_loss < best_val:
            best_val = trial.val_loss
            regret = table.expected_test_error(trial.row, trial.epochs) - table.best_test_error
            result.regrets.append(regret)
        else:
            result.regrets.append(result.regrets[-1])
        result.times.append(now)

    for worker in range(workers):
        start(worker, 0.0)
    while events:
        now, _, worker, trial = heapq.heappop(events)
        if now > budget_seconds:
            break
        row, slot, epoch = trial.row, trial.seed_slot, trial.epochs + 1
        result.busy_seconds += epoch_seconds[row, slot, epoch - 1] + (
            pretrain_seconds[row, slot] if epoch == 1 else 0.0
        )
        if epoch > table.reported_epochs(row, slot):  # the run diverged in this epoch
            trial.infeasible = True
            session.infeasible(trial.handle, table.reasons.get(f"{row},{slot}", "diverged"))
            finish(trial, now)
            start(worker, now)
            continue
        trial.epochs = epoch
        result.epochs_trained += 1
        metrics = table.epoch_report(row, slot, epoch)
        trial.val_loss = min(trial.val_loss, metrics["val_loss"])
        last = epoch == table.max_epochs
        trial.stopped = session.report(trial.handle, epoch, metrics, last) and not last
        if trial.stopped or last:
            session.complete(trial.handle, table.final_metrics(row, slot, epoch))
            finish(trial, now)
            start(worker, now)
        else:
            heapq.heappush(
                events, (now + epoch_seconds[row, slot, epoch], next(order), worker, trial)
            )
    return result


# -- tunewire -----------------------------------------------------------------------------
class TunewireCurveSession:
    """A study on a real tunewire server, driven through the Python client as the
    trainer's worker drives it."""

    def __init__(
        self,
        client: Any,
        table: CurveTable,
        *,
        algorithm: str = "gp",
        early_stopping: Mapping[str, Any] | None = None,
        seed: int = 0,
        initial_trials: int = INITIAL_TRIALS,
    ) -> None:
        self.client = client
        self.study = f"{table.task}-{algorithm}-{seed}-{time.time_ns()}"
        spec: dict[str, Any] = {
            "parameters": table.parameters,
            "metrics": [{"name": "val_loss", "goal": "minimize"}],
            "algorithm": algorithm,
            "seed": seed,
            "initial_trials": initial_trials,
        }
        if early_stopping:
            spec["early_stopping"] = dict(early_stopping)
        client.create_study(self.study, spec)

    def ask(self, worker: int) -> tuple[Any, Params]:
        trial = self.client.suggest(self.study, worker_id=f"w{worker}")[0]
        return trial, dict(trial.params)

    def report(
        self, handle: Any, epoch: int, metrics: Mapping[str, float], last_step: bool
    ) -> bool:
        return bool(handle.report(epoch, metrics, last_step=last_step))

    def complete(self, handle: Any, metrics: Mapping[str, float]) -> None:
        handle.complete(metrics)

    def infeasible(self, handle: Any, reason: str) -> None:
        handle.infeasible(reason)


# -- Optuna -------------------------------------------------------------------------------
def suggest_optuna(trial: Any, space: SearchSpace) -> Params:
    """Define-by-run suggestions over a tunewire space: conditional parameters are asked
    only when active (the domain's own `is_active`), log scales stay log."""
    out: Params = {}
    for p in space.parameters:
        if not space.is_active(p, out):
            continue
        if p.kind is ParameterKind.FLOAT:
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif p.kind is ParameterKind.INTEGER:
            out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return out


@dataclass
class _OptunaTrial:
    trial: Any
    pruned: bool = False


class OptunaCurveSession:
    """Optuna's ask/tell in this process: TPE (constant liar with several workers) and a
    pruner (``hyperband``, ``successive_halving`` or ``none``), trials reported by epoch."""

    def __init__(
        self, table: CurveTable, *, pruner: str, seed: int, workers: int, sampler: str = "tpe"
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.optuna = optuna
        if sampler == "tpe":
            chosen: Any = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=INITIAL_TRIALS, constant_liar=workers > 1
            )
        else:
            chosen = optuna.samplers.RandomSampler(seed=seed)
        pruners: dict[str, Any] = {
            "hyperband": lambda: optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=table.max_epochs, reduction_factor=3
            ),
            "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=3
            ),
            "none": optuna.pruners.NopPruner,
        }
        self.study = optuna.create_study(sampler=chosen, pruner=pruners[pruner]())
        self.space = table.space

    def ask(self, worker: int) -> tuple[Any, Params]:
        trial = self.study.ask()
        return _OptunaTrial(trial), suggest_optuna(trial, self.space)

    def report(
        self, handle: Any, epoch: int, metrics: Mapping[str, float], last_step: bool
    ) -> bool:
        handle.trial.report(metrics["val_loss"], epoch)
        handle.pruned = not last_step and bool(handle.trial.should_prune())
        return handle.pruned

    def complete(self, handle: Any, metrics: Mapping[str, float]) -> None:
        if handle.pruned:
            self.study.tell(handle.trial, state=self.optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(handle.trial, metrics["val_loss"])

    def infeasible(self, handle: Any, reason: str) -> None:
        self.study.tell(handle.trial, state=self.optuna.trial.TrialState.FAIL)


# -- summaries ----------------------------------------------------------------------------
def median_regret_at(runs: Sequence[Replay], t: float) -> float:
    return float(np.median([r.regret_at(t) for r in runs]))


def time_to_reach(runs: Sequence[Replay], target: float) -> float | None:
    """The first simulated time at which the median regret over seeds is at or below
    target, and stays there until the budget (None if never)."""
    moments = sorted({t for r in runs for t in r.times})
    reached = None
    for t in moments:
        if median_regret_at(runs, t) <= target:
            reached = reached if reached is not None else t
        else:
            reached = None
    return reached


def regret_area(runs: Sequence[Replay], budget_seconds: float, points: int = 200) -> float:
    """Mean over the budget of the median regret (inf before the first result counts as
    the worst finite median seen), the anytime summary of one arm."""
    grid = np.linspace(0.0, budget_seconds, points)
    medians = np.array([median_regret_at(runs, t) for t in grid])
    finite = medians[np.isfinite(medians)]
    if not finite.size:
        return float("inf")
    return float(np.where(np.isfinite(medians), medians, finite.max()).mean())
