"""`gp_mf`: Bayesian optimisation that learns from every trial's learning curve.

The plain GP (policy.py) sees one number per trial: its final result. A trial that early
stopping ended at epoch 3 then enters as if its epoch-3 loss were what it would have
reached at epoch 50, and a running trial's reports are ignored. This model is a GP over
(configuration, fidelity), as in MOBSTER (Klein et al., 2020): every trial contributes
its best-so-far value at each of a few levels of training it reached, the fidelity
column being log(step) / log(max step), so that the kernel learns from the data how
values at low fidelity predict values at full training (the fidelity column has its own
lengthscale). Running trials contribute the levels they have reported.

New configurations are chosen by log expected improvement at a target fidelity: the
highest level that enough trials have reached (more than there are parameters), as in
BOHB (Syne Tune's MOBSTER offers the same choice). Early in a study with
successive halving that is the first rung, where there is plenty of data; as trials are
promoted it climbs to full training. The stopping rules stay the study's own
(`early_stopping`): this changes only which configurations are proposed.

Everything is a pure function of the study's history (trials and reports), so any replica
computes the same suggestion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from tunewire.server.algorithms.base import Curve, SuggestRequest
from tunewire.server.algorithms.encoding import ModelEncoding
from tunewire.server.algorithms.gp.acquisition import acquisition_factory, with_fixed
from tunewire.server.algorithms.gp.model import (
    DTYPE,
    MAX_TRAINING_POINTS,
    TrainingData,
    training_data,
    warp_column,
)
from tunewire.server.algorithms.gp.optimise import optimise_batch
from tunewire.server.algorithms.gp.policy import GaussianProcessSearch, fit_models, model_seed
from tunewire.server.algorithms.gp.threads import single_threaded_blas
from tunewire.server.domain.early_stopping import rung_steps
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.space import Params
from tunewire.server.domain.study import Goal, StudySpec, TrialState

# Levels of training at which a curve is read when the study has no successive-halving
# rungs: steps 1, 3, 9, 27, ... (and the full length).
LEVEL_FACTOR = 3


@dataclass(frozen=True)
class FidelityRows:
    """The model's training rows.

    Attributes:
        x: (N, D + 1) encoded configurations with the fidelity in the last column.
        y: (N, 1) values, warped and oriented so that larger is better.
        target: the fidelity at which new configurations are scored.
    """

    x: np.ndarray
    y: np.ndarray
    target: float


def max_step(spec: StudySpec, curves: Sequence[Curve]) -> int:
    """The step that counts as full training: the study's `max_step`, else successive
    halving's `max_resource`, else the furthest step any trial has reported."""
    policy = spec.early_stopping
    if policy.max_step:
        return int(policy.max_step)
    if policy.rule == "successive_halving" and int(policy.settings["max_resource"]):
        return int(policy.settings["max_resource"])
    return max((c[-1][0] for c in curves if c), default=1)


def levels(spec: StudySpec, full: int) -> list[int]:
    """Steps below full training at which curves are read: the successive-halving rungs
    where the study has them, else 1, 3, 9, ..."""
    policy = spec.early_stopping
    if policy.rule == "successive_halving":
        s = policy.settings
        steps = rung_steps(int(s["min_resource"]), float(s["reduction_factor"]), full, full)
    else:
        steps, r = [], 1
        while r < full:
            steps.append(r)
            r *= LEVEL_FACTOR
    return [r for r in steps if 1 <= r < full]


def fidelity(step: int, full: int) -> float:
    """log(step) / log(full) in [0, 1]: equal ratios of training are equal distances."""
    if full <= 1:
        return 1.0
    return min(1.0, max(0.0, math.log(max(step, 1)) / math.log(full)))


def _best_so_far(curve: Curve, goal: Goal) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([s for s, _ in curve], dtype=np.int64)
    values = np.array([v for _, v in curve], dtype=float)
    best = np.minimum.accumulate(values) if goal is Goal.MINIMIZE else np.maximum.accumulate(values)
    return steps, best


def _curve_rows(curve: Curve, goal: Goal, at: Sequence[int]) -> list[tuple[int, float]]:
    """(level, best value up to it) for each level the curve reached."""
    if not curve:
        return []
    steps, best = _best_so_far(curve, goal)
    rows = []
    for level in at:
        if steps[-1] < level or steps[0] > level:
            continue
        rows.append((level, float(best[np.searchsorted(steps, level, side="right") - 1])))
    return rows


def fidelity_rows(
    spec: StudySpec, encoding: ModelEncoding, request: SuggestRequest, seed: int
) -> FidelityRows:
    """Each trial's values at the levels it reached; a completed trial (or one whose
    curve reached full training) also at fidelity 1 with its final result. Failed trials
    are not here: the caller adds them at the target, as the plain GP does."""
    metric, goal = spec.metrics[0].name, spec.metrics[0].goal
    full = max_step(spec, [o.curve for o in request.observations] + list(request.pending_curves))
    at = levels(spec, full)
    xs: list[np.ndarray] = []
    steps: list[int] = []
    values: list[float] = []

    def add(params: Params, rows: list[tuple[int, float]]) -> None:
        if rows:
            x = encoding.encode(params)
            for step, value in rows:
                xs.append(x)
                steps.append(step)
                values.append(value)

    for obs in request.observations:
        if obs.state not in (TrialState.COMPLETED, TrialState.STOPPED_EARLY):
            continue
        final = (obs.metrics or {}).get(metric)
        if final is None or not math.isfinite(float(final)):
            continue
        rows = _curve_rows(obs.curve, goal, at)
        if obs.state is TrialState.COMPLETED or (obs.curve and obs.curve[-1][0] >= full):
            rows.append((full, float(final)))
        add(obs.params, rows)
    for params, curve in zip(request.pending, request.pending_curves, strict=False):
        add(params, _curve_rows(curve, goal, at))
    fid = np.array([fidelity(s, full) for s in steps])
    # The target: the highest level reached by more trials than there are parameters.
    needed = len(spec.space) + 1
    target = fidelity(at[0], full) if at else 1.0
    for level in [*at, full]:
        f = fidelity(level, full)
        if np.count_nonzero(np.isclose(fid, f)) >= needed:
            target = max(target, f)
    raw = np.array(values)
    keep = _keep(fid, target, seed)
    x = np.column_stack([np.array(xs).reshape(-1, encoding.dim), fid])[keep]
    y = warp_column(raw[keep], goal) if len(keep) else raw[keep]
    return FidelityRows(x=x, y=y.reshape(-1, 1), target=target)


def _keep(fid: np.ndarray, target: float, seed: int) -> np.ndarray:
    """Row indices, at most MAX_TRAINING_POINTS: every row at or above the target first,
    then a seeded sample of the others (exact-GP cost grows as n^3)."""
    n = len(fid)
    if n <= MAX_TRAINING_POINTS:
        return np.arange(n)
    high = np.flatnonzero(fid >= target - 1e-12)
    low = np.flatnonzero(fid < target - 1e-12)
    rng = np.random.default_rng(seed)
    if len(high) >= MAX_TRAINING_POINTS:
        return np.sort(rng.choice(high, MAX_TRAINING_POINTS, replace=False))
    rest = rng.choice(low, MAX_TRAINING_POINTS - len(high), replace=False)
    return np.sort(np.concatenate([high, rest]))


class MultiFidelityGaussianProcessSearch(GaussianProcessSearch):
    """`gp_mf`: the GP of `gp` over (configuration, fidelity), fitted to every trial's
    learning curve (see the module doc). One metric only: the curve is the primary
    metric's."""

    uses_curves = True

    def check_spec(self, spec: StudySpec) -> None:
        super().check_spec(spec)
        if len(spec.metrics) > 1:
            raise InvalidArgument(
                "gp_mf models the learning curve of one metric; this study has "
                f"{len(spec.metrics)}. Use gp for several metrics"
            )

    def _suggest_with_model(self, request: SuggestRequest) -> list[Params]:
        with single_threaded_blas():
            return suggest_with_fidelity_gp(request)


def suggest_with_fidelity_gp(request: SuggestRequest) -> list[Params]:
    """Fits the (configuration, fidelity) model and maximises LogEI at the target
    fidelity; raises on numerical failure (the caller falls back to Sobol)."""
    spec = request.spec
    encoding = ModelEncoding(spec.space)
    seed = model_seed(request)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        trials = training_data(spec, encoding, request.observations, seed)
        rows = fidelity_rows(spec, encoding, request, seed)
        if len(rows.x) < 2 or not len(trials.x):
            raise ValueError("fewer than two results to fit")
        fixed = np.array([rows.target])
        # Failed and infeasible trials enter at the target, at the worst value seen (as
        # in the plain GP).
        model, _ = fit_models(
            TrainingData(
                x=rows.x,
                y=rows.y,
                failed_x=with_fixed(trials.failed_x, fixed),
                trial_ids=(),
            )
        )
        # The local part of the acquisition search starts from the trials the model
        # rates best at the target, not from their raw values at mixed fidelities.
        at_target = torch.tensor(with_fixed(trials.x, fixed), dtype=DTYPE)
        with torch.no_grad():
            mean = model.posterior(at_target).mean.reshape(-1, 1).numpy()
        data = replace(trials, y=mean)
        pending = [encoding.encode(p) for p in request.pending]
        factory = acquisition_factory(model, data, 1, seed, fixed)
        rng = np.random.default_rng(seed)
        points = optimise_batch(factory, encoding, data, pending, request.count, rng, seed)
    return [encoding.decode(row) for row in encoding.with_activity(points)]
