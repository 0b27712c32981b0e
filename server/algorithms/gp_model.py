"""The GP surrogate: which trials it learns from, how outcomes are transformed, the fit.

Kept apart from the acquisition (`gp.py`) so that the model can be tested and tuned on
its own; everything here is deterministic given the inputs and the torch seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from scipy.optimize import minimize

from tunewire.server.algorithms.base import Observation
from tunewire.server.encoding import ModelEncoding
from tunewire.server.study import Goal, StudySpec, TrialState

DTYPE = torch.float64
# Beyond this many trials the model is fitted on a subset (the best quarter plus a seeded
# sample of the rest): exact-GP cost grows as n^3 and the fit's iterations as n^2, and
# the benchmark shows no loss of regret at the cap (benchmarks/RESULTS.md, scaling).
MAX_TRAINING_POINTS = 300
# Outcomes whose positive values span this ratio or more are modelled in log space: a loss
# falling from 10 to 0.001 would otherwise leave every good point at "zero" after scaling.
LOG_WARP_RATIO = 100.0
# Iteration cap of the L-BFGS-B hyperparameter fit. Converged fits on these problems take
# 30-80 iterations; the cap bounds the worst case on awkward data.
FIT_MAX_ITERATIONS = 150
# The bounds of BoTorch's default constraints (lengthscale >= 0.025, noise >= 1e-4); the
# upper lengthscale bound only keeps a flat dimension from drifting off to infinity.
MIN_LENGTHSCALE = 0.025
MAX_LENGTHSCALE = 1e3
MIN_NOISE = 1e-4


@dataclass(frozen=True)
class TrainingData:
    """The model's view of the history.

    Attributes:
        x: (n, D) encoded configurations of trials with results.
        y: (n, m) outcomes, oriented so that larger is better, warped, not yet scaled.
        failed_x: (k, D) encoded configurations of FAILED and INFEASIBLE trials (and of
            trials whose metrics are missing or not finite).
        trial_ids: the trial id of each row of x.
    """

    x: np.ndarray
    y: np.ndarray
    failed_x: np.ndarray
    trial_ids: tuple[int, ...]


def oriented_values(spec: StudySpec, observation: Observation) -> np.ndarray | None:
    """The trial's metrics in spec order, negated for MINIMIZE; None if not usable."""
    if observation.state not in (TrialState.COMPLETED, TrialState.STOPPED_EARLY):
        return None
    metrics = observation.metrics or {}
    out = []
    for m in spec.metrics:
        value = metrics.get(m.name)
        if value is None or not math.isfinite(float(value)):
            return None
        out.append(float(value))
    return np.array(out)


def warp_column(values: np.ndarray, goal: Goal) -> np.ndarray:
    """Log-warps a metric that is positive and spans orders of magnitude, then orients it.

    The warp is monotone, so the best trial stays the best; only the scale the model sees
    changes. Larger is better in the result.
    """
    finite = values[np.isfinite(values)]
    if len(finite) >= 2 and finite.min() > 0 and finite.max() / finite.min() >= LOG_WARP_RATIO:
        values = np.log(values)
    return values if goal is Goal.MAXIMIZE else -values


def training_data(
    spec: StudySpec, encoding: ModelEncoding, observations: Sequence[Observation], seed: int
) -> TrainingData:
    """Encodes the history for the model.

    LOST trials are left out entirely: a worker disappearing says nothing about the
    configuration. FAILED and INFEASIBLE trials (and results with missing or non-finite
    metrics) go to `failed_x`, which the feasibility model learns from.
    """
    xs, raw, ids, failed = [], [], [], []
    for obs in observations:
        if obs.state is TrialState.LOST:
            continue
        values = oriented_values(spec, obs)
        x = encoding.encode(obs.params)
        if values is None:
            if obs.state in (TrialState.FAILED, TrialState.INFEASIBLE) or obs.metrics is not None:
                failed.append(x)
            continue
        xs.append(x)
        raw.append(values)
        ids.append(obs.trial_id)
    d = encoding.dim
    x_arr = np.array(xs).reshape(-1, d)
    raw_arr = np.array(raw).reshape(-1, len(spec.metrics))
    id_arr = np.array(ids, dtype=np.int64)
    if len(x_arr) > MAX_TRAINING_POINTS:
        keep = _subsample(raw_arr, spec, seed)
        x_arr, raw_arr, id_arr = x_arr[keep], raw_arr[keep], id_arr[keep]
    y = np.column_stack(
        [warp_column(raw_arr[:, j], m.goal) for j, m in enumerate(spec.metrics)]
    ) if len(raw_arr) else raw_arr
    return TrainingData(
        x=x_arr,
        y=y.reshape(-1, len(spec.metrics)),
        failed_x=np.array(failed).reshape(-1, d),
        trial_ids=tuple(int(i) for i in id_arr),
    )


def _subsample(raw: np.ndarray, spec: StudySpec, seed: int) -> np.ndarray:
    """Indices of MAX_TRAINING_POINTS rows: the best quarter (by summed ranks over metrics,
    so that every metric's good region stays resolved) and a seeded sample of the rest."""
    n = len(raw)
    score = np.zeros(n)
    for j, m in enumerate(spec.metrics):
        column = raw[:, j] if m.goal is Goal.MAXIMIZE else -raw[:, j]
        score += np.argsort(np.argsort(-column))  # rank 0 = best
    order = np.argsort(score, kind="stable")
    n_best = MAX_TRAINING_POINTS // 4
    best = order[:n_best]
    rest = np.random.default_rng(seed).choice(
        order[n_best:], size=MAX_TRAINING_POINTS - n_best, replace=False
    )
    return np.sort(np.concatenate([best, rest]))


def fit_objective_model(x: torch.Tensor, y: torch.Tensor) -> SingleTaskGP:
    """A GP per outcome (batched for several metrics) with standardised outputs.

    The model is BoTorch's SingleTaskGP with its defaults: an RBF-ARD kernel with the
    dimension-scaled log-normal lengthscale prior and a log-normal noise prior (Hvarfner
    et al., 2024). Only the fit is our own (`map_hyperparameters`): the same MAP objective
    in a few lines of torch runs about ten times faster than the generic GPyTorch path
    on small data, which is most of a suggestion's latency.
    """
    model = SingleTaskGP(x, y, outcome_transform=Standardize(m=y.shape[-1]))
    _fit_in_place(model)
    return model


def _fit_in_place(model: SingleTaskGP) -> None:
    """Sets the model's hyperparameters to the MAP estimate, output by output."""
    x = model.train_inputs[0]
    targets = model.train_targets  # standardised; (n,) or (m, n)
    if targets.dim() == 1:
        x, targets = x.unsqueeze(0), targets.unsqueeze(0)
    fits = [map_hyperparameters(x[i], targets[i]) for i in range(targets.shape[0])]
    lengthscale = torch.stack([f.lengthscale for f in fits])
    noise = torch.stack([f.noise for f in fits])
    constant = torch.stack([f.constant for f in fits])
    batched = model.num_outputs > 1
    with torch.no_grad():
        model.covar_module.lengthscale = lengthscale.unsqueeze(-2) if batched else lengthscale
        model.likelihood.noise = noise.unsqueeze(-1) if batched else noise
        model.mean_module.constant = constant if batched else constant.squeeze(0)
    model.eval()


@dataclass(frozen=True)
class Hyperparameters:
    lengthscale: torch.Tensor  # (d,)
    noise: torch.Tensor  # (1,)
    constant: torch.Tensor  # ()


def map_hyperparameters(x: torch.Tensor, y: torch.Tensor) -> Hyperparameters:
    """MAP hyperparameters of a zero-noise-free RBF-ARD GP with BoTorch's default priors.

    Maximises log N(y | c, K + s I) + log p(lengthscales) + log p(s) over log-lengthscales,
    log-noise and the constant mean c with L-BFGS-B, from the priors' modes (as
    BoTorch does), within the same lower bounds (lengthscale >= 0.025, noise >= 1e-4).

    Args:
        x: (n, d) inputs.
        y: (n,) standardised outputs.

    Returns:
        The fitted lengthscales, noise variance and constant mean.
    """
    n, d = x.shape
    ls_loc = math.sqrt(2.0) + 0.5 * math.log(d)
    ls_scale = math.sqrt(3.0)
    noise_loc, noise_scale = -4.0, 1.0

    def neg_log_posterior(theta: torch.Tensor) -> torch.Tensor:
        log_ls, log_noise, constant = theta[:d], theta[d], theta[d + 1]
        z = x / torch.exp(log_ls)
        sq = torch.cdist(z, z).pow(2)
        k = torch.exp(-0.5 * sq) + torch.exp(log_noise) * torch.eye(n, dtype=x.dtype)
        chol, info = torch.linalg.cholesky_ex(k)
        if int(info) != 0:
            return torch.tensor(float("inf"), dtype=x.dtype)
        r = (y - constant).unsqueeze(-1)
        alpha = torch.cholesky_solve(r, chol)
        log_lik = (
            -0.5 * (r * alpha).sum()
            - torch.log(torch.diagonal(chol)).sum()
            - 0.5 * n * math.log(2 * math.pi)
        )
        log_prior = (
            -log_ls - 0.5 * ((log_ls - ls_loc) / ls_scale) ** 2
        ).sum() + (-log_noise - 0.5 * ((log_noise - noise_loc) / noise_scale) ** 2)
        return -(log_lik + log_prior) / n

    def value_and_grad(theta_np: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.tensor(theta_np, dtype=x.dtype, requires_grad=True)
        loss = neg_log_posterior(theta)
        if not torch.isfinite(loss):
            return float("inf"), np.zeros_like(theta_np)
        (grad,) = torch.autograd.grad(loss, theta)
        return float(loss.detach()), grad.numpy()

    start = np.concatenate(
        [np.full(d, ls_loc - ls_scale**2), [noise_loc - noise_scale**2], [0.0]]
    )
    start[:d] = np.maximum(start[:d], math.log(MIN_LENGTHSCALE))
    bounds = [(math.log(MIN_LENGTHSCALE), math.log(MAX_LENGTHSCALE))] * d + [
        (math.log(MIN_NOISE), 0.0),
        (None, None),
    ]
    result = minimize(
        value_and_grad,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": FIT_MAX_ITERATIONS},
    )
    if not np.isfinite(result.fun):
        raise np.linalg.LinAlgError("the GP kernel matrix is singular at every tried hyperparameter")
    theta = torch.tensor(result.x, dtype=x.dtype)
    return Hyperparameters(
        lengthscale=torch.exp(theta[:d]), noise=torch.exp(theta[d : d + 1]), constant=theta[d + 1]
    )


def fit_feasibility_model(x: torch.Tensor, infeasible: torch.Tensor) -> SingleTaskGP:
    """A GP regression on labels (+1 failed, -1 succeeded), read as a constraint value.

    A classifier would be more faithful, but regression on labels is cheap, fits in the
    same machinery, and its sign separates failing regions well enough to steer the
    acquisition away (negative = feasible, the convention of BoTorch's constraints).
    """
    labels = (2.0 * infeasible - 1.0).unsqueeze(-1)
    model = SingleTaskGP(x, labels, outcome_transform=Standardize(m=1))
    _fit_in_place(model)
    return model


def combine_models(objective: SingleTaskGP, feasibility: SingleTaskGP | None) -> SingleTaskGP | ModelListGP:
    """The objective model alone, or objective outputs followed by the feasibility output."""
    if feasibility is None:
        return objective
    if objective.num_outputs == 1:
        return ModelListGP(objective, feasibility)
    parts = [objective.subset_output([i]) for i in range(objective.num_outputs)]
    return ModelListGP(*parts, feasibility)
