"""What the dashboard computes from a study's results: parameter importance (a first-order
fANOVA decomposition of a random forest, as Hutter et al. 2014 and Optuna's default
evaluator do) and the Pareto front of several metrics.

Importance, in words: a random forest (scikit-learn) learns the primary metric from the
parameters of the finished trials. For each tree, the variance of its prediction over the
whole search space (each parameter uniform over its range, log-scaled ones in log space)
is split into the part each parameter explains on its own (its main effect: the
prediction averaged over all the other parameters, as a function of that one). A
parameter's importance is its share of the main effects, averaged over the trees.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

# Enough trials to say something; beyond the cap a seeded sample keeps it within a second.
MIN_TRIALS = 4
MAX_TRIALS = 3000
TREES = 32
# An inactive conditional parameter is one more value, below its range.
INACTIVE = -0.1


def encode(
    parameters: Sequence[Mapping[str, Any]], params: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """Trials' parameter values as columns in [INACTIVE, 1]: numbers scaled to their range
    (log-scaled ones in log space), categoricals as the middle of their slot."""
    x = np.full((len(params), len(parameters)), INACTIVE)
    for j, p in enumerate(parameters):
        choices = list(p.get("choices") or [])
        for i, values in enumerate(params):
            v = values.get(p["name"])
            if v is None:
                continue
            if p["kind"] == "categorical":
                k = choices.index(v) if v in choices else 0
                x[i, j] = (k + 0.5) / len(choices)
                continue
            low, high, value = float(p["low"]), float(p["high"]), float(v)
            if p.get("log") and low > 0 and value > 0:
                low, high, value = math.log(low), math.log(high), math.log(value)
            x[i, j] = 0.5 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    return x


def _leaves(tree: Any, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The leaves of a fitted sklearn tree: lower and upper corners of their boxes in
    [INACTIVE, 1]^dims, and their values."""
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    lows, highs, values = [], [], []
    stack = [(0, np.full(dims, INACTIVE), np.ones(dims))]
    while stack:
        node, lo, hi = stack.pop()
        if left[node] == -1:
            lows.append(lo)
            highs.append(hi)
            values.append(float(tree.value[node].ravel()[0]))
            continue
        f, t = feature[node], threshold[node]
        t = min(max(t, lo[f]), hi[f])
        hi_left = hi.copy()
        hi_left[f] = t
        lo_right = lo.copy()
        lo_right[f] = t
        stack.append((left[node], lo, hi_left))
        stack.append((right[node], lo_right, hi))
    return np.array(lows), np.array(highs), np.array(values)


def main_effects(tree: Any, dims: int) -> np.ndarray | None:
    """Each parameter's main-effect variance as a share of the tree's total variance
    (None for a constant tree)."""
    lows, highs, values = _leaves(tree, dims)
    widths = highs - lows
    span = 1.0 - INACTIVE
    volumes = np.prod(widths / span, axis=1)
    mean = float(np.sum(volumes * values))
    total = float(np.sum(volumes * (values - mean) ** 2))
    if total <= 1e-300:
        return None
    out = np.zeros(dims)
    for j in range(dims):
        # The prediction averaged over the other parameters is constant between the
        # tree's cut points on parameter j: sum each leaf over the intervals it covers.
        cuts = np.unique(np.concatenate([lows[:, j], highs[:, j]]))
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(widths[:, j] > 0, volumes * values / (widths[:, j] / span), 0.0)
        start = np.searchsorted(cuts, lows[:, j])
        stop = np.searchsorted(cuts, highs[:, j])
        diff = np.zeros(len(cuts))
        np.add.at(diff, start, weight)
        np.add.at(diff, stop, -weight)
        marginal = np.cumsum(diff)[:-1]
        interval = np.diff(cuts) / span
        out[j] = float(np.sum(interval * (marginal - mean) ** 2)) / total
    return out


def importance(
    parameters: Sequence[Mapping[str, Any]],
    params: Sequence[Mapping[str, Any]],
    objective: Sequence[float],
) -> dict[str, Any] | None:
    """{"parameters": names, "importance": shares summing to 1, "trials": n} by importance,
    or None with fewer than MIN_TRIALS trials or a constant objective."""
    if len(params) < MIN_TRIALS or not parameters:
        return None
    from sklearn.ensemble import RandomForestRegressor  # a second's import: only when used

    rows = np.arange(len(params))
    if len(rows) > MAX_TRIALS:
        rows = np.sort(np.random.default_rng(0).choice(rows, MAX_TRIALS, replace=False))
    x = encode(parameters, [params[int(i)] for i in rows])
    y = np.asarray(objective, dtype=float)[rows]
    if float(np.ptp(y)) == 0.0:
        return None
    forest = RandomForestRegressor(
        n_estimators=TREES, max_depth=12, min_samples_leaf=2, random_state=0, n_jobs=1
    ).fit(x, y)
    effects = [main_effects(t.tree_, x.shape[1]) for t in forest.estimators_]
    found = [e for e in effects if e is not None]
    if not found:
        return None
    shares = np.mean(found, axis=0)
    shares = shares / shares.sum() if shares.sum() > 0 else shares
    order = np.argsort(-shares, kind="stable")
    return {
        "parameters": [parameters[int(j)]["name"] for j in order],
        "importance": [float(shares[int(j)]) for j in order],
        "trials": len(rows),
    }


class ImportanceProcess:
    """The child process that computes `importance`: scikit-learn and the forest (about
    180 MB) never stay in the dashboard's memory, and the dashboard's threads keep the CPU
    the fit does not take.

    The child runs at the lowest CPU priority, so on a machine it shares with a server the
    server's calls come first. It is started on first use and kept while work keeps
    coming: importing scikit-learn costs a few times more CPU than a fit, so a study that
    keeps finishing trials would otherwise pay it every few seconds. It ends after
    `idle_seconds` without work.
    """

    def __init__(self, idle_seconds: float = 120.0) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._running = 0
        self._timer: threading.Timer | None = None
        self.started = 0  # children started so far (tests read it)
        atexit.register(self.close)

    def compute(
        self,
        parameters: Sequence[Mapping[str, Any]],
        params: Sequence[Mapping[str, Any]],
        objective: Sequence[float],
    ) -> dict[str, Any] | None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_start,
                    initargs=(os.getpid(),),
                )
                self.started += 1
            pool = self._pool
            self._running += 1
        try:
            found: dict[str, Any] | None = pool.submit(
                importance, list(parameters), list(params), list(objective)
            ).result(timeout=600)
            return found
        except (BrokenProcessPool, TimeoutError):
            self._end(pool, kill=True)  # died or stuck: the next call starts a new child
            raise
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0 and self._pool is pool and self._timer is None:
                    self._timer = threading.Timer(self.idle_seconds, self._end_if_idle, (pool,))
                    self._timer.daemon = True
                    self._timer.start()

    def _end_if_idle(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._running or self._pool is not pool:
                return
        self._end(pool)

    def _end(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if kill:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Ends the child now (the dashboard's exit does)."""
        with self._lock:
            pool = self._pool
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if pool is not None:
            self._end(pool, kill=True)

    def pid(self) -> int | None:
        """The child's process id while one runs (tests read it)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return next(iter(processes), None)


def _child_start(parent: int) -> None:
    """In the child: the lowest CPU priority, and an end of its own when the dashboard is
    gone (killed, it cannot end its child, which would otherwise wait for work forever)."""
    try:
        os.nice(19)
    except (AttributeError, OSError):  # no nice() here: run at the usual priority
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


IMPORTANCE_PROCESS = ImportanceProcess()


def importance_in_child(
    parameters: Sequence[Mapping[str, Any]],
    params: Sequence[Mapping[str, Any]],
    objective: Sequence[float],
) -> dict[str, Any] | None:
    """`importance` computed in the dashboard's `ImportanceProcess`."""
    return IMPORTANCE_PROCESS.compute(parameters, params, objective)


def pareto_front(objectives: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Indices of the rows no other row dominates (at least as good everywhere, better
    somewhere), for metrics to maximise where `maximize` says so."""
    if len(objectives) == 0:
        return np.zeros(0, dtype=int)
    y = objectives * np.where(np.asarray(maximize), -1.0, 1.0)
    candidates = np.arange(len(y))
    front = []
    # Best-first by the sum: a row is dominated only by rows before it in this order.
    order = np.lexsort((np.arange(len(y)), y.sum(axis=1)))
    y, candidates = y[order], candidates[order]
    alive = np.ones(len(y), dtype=bool)
    for i in range(len(y)):
        if not alive[i]:
            continue
        front.append(candidates[i])
        dominated = np.all(y[i] <= y, axis=1) & np.any(y[i] < y, axis=1)
        alive &= ~dominated
    return np.sort(np.array(front, dtype=int))
