"""The GP surrogate: which trials it learns from, how outcomes are transformed, the fit.

Kept apart from the acquisition (acquisition.py) so that the model can be tested and tuned on
its own; everything here is deterministic given the inputs and the torch seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.linalg
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from scipy.optimize import minimize
from scipy.stats import norm
from sklearn.preprocessing import PowerTransformer

from tunewire.server.algorithms.base import Observation
from tunewire.server.algorithms.encoding import ModelEncoding
from tunewire.server.domain.study import Goal, StudySpec, TrialState

DTYPE = torch.float64
ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
# Beyond this many trials the model is fitted on a subset (the best quarter plus a seeded
# sample of the rest): exact-GP cost grows as n^3 and the fit's iterations as n^2, and
# bench_optimizer's scaling runs show no loss of regret at the cap.
MAX_TRAINING_POINTS = 300
# Iteration cap of the L-BFGS-B hyperparameter fit: above what converged fits need, it
# bounds the worst case on awkward data.
FIT_MAX_ITERATIONS = 150
# Lengthscales keep BoTorch's lower bound (0.025); the upper bound only keeps a flat
# dimension from drifting off to infinity.
MIN_LENGTHSCALE = 0.025
MAX_LENGTHSCALE = 1e3
# Noise variance (of standardised outcomes): a Gamma(1.1, rate 30) prior with a 1e-6 floor,
# as Optuna's GPSampler uses, instead of BoTorch's LogNormal(-4, 1) with a 1e-4 floor. The
# LogNormal prior holds the noise near 1e-2, which blurs the last digits of deterministic
# objectives, while noisy objectives still fit their noise under the Gamma prior (it is
# weak above 1e-2).
MIN_NOISE = 1e-6
KERNEL = "matern"  # or "rbf" (BoTorch's default), kept for comparison runs
# Added to squared distances in the Matern kernel (see kernel_of_distance).
DISTANCE_OFFSET = 1e-12
NOISE_PRIOR_CONCENTRATION = 1.1
NOISE_PRIOR_RATE = 30.0


@dataclass(frozen=True)
class TrainingData:
    """The model's view of the history.

    Attributes:
        x: (n, D) encoded configurations of trials with results.
        y: (n, m) outcomes, warped and oriented so that larger is better, not yet scaled.
        failed_x: (k, D) encoded configurations of FAILED and INFEASIBLE trials (and of
            trials whose metrics are missing or not finite).
        trial_ids: the trial id of each row of x.
    """

    x: np.ndarray
    y: np.ndarray
    failed_x: np.ndarray
    trial_ids: tuple[int, ...]


def metric_values(spec: StudySpec, observation: Observation) -> np.ndarray | None:
    """The trial's metric values in spec order, or None unless it has finite results for all."""
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
    """Orients a metric (larger is better) and warps it towards a normal shape.

    A Yeo-Johnson power transform fitted by maximum likelihood (as in HEBO) squeezes the
    long tail of bad values — a loss of 300 among losses near 1 would otherwise flatten
    every good point after standardisation, and the GP would explore instead of refining.
    The warp is monotone, so the best trial stays the best. Where it cannot be fitted
    (too few or extreme values) a rank-based normal score is used instead.
    """
    oriented = values if goal is Goal.MAXIMIZE else -values
    if len(oriented) < 3 or np.ptp(oriented) == 0:
        return oriented
    centred = oriented - np.median(oriented)
    scale = np.std(centred)
    scaled = centred / scale if np.isfinite(scale) and scale > 0 else centred
    if np.all(np.isfinite(scaled)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warped = PowerTransformer(method="yeo-johnson", standardize=True).fit_transform(
                scaled[:, None]
            )[:, 0]
        if np.all(np.isfinite(warped)) and np.all(np.diff(warped[np.argsort(scaled)]) >= -1e-9):
            return warped
    ranks = np.argsort(np.argsort(oriented, kind="stable"), kind="stable")
    return norm.ppf((ranks + 0.5) / len(oriented))


def training_data(
    spec: StudySpec, encoding: ModelEncoding, observations: Sequence[Observation], seed: int
) -> TrainingData:
    """Encodes the history for the model.

    LOST trials are left out entirely: a worker disappearing says nothing about the
    configuration. FAILED and INFEASIBLE trials (and results with missing or non-finite
    metrics) go to `failed_x`; the model sees them at the worst observed value.
    """
    xs, raw, ids, failed = [], [], [], []
    for obs in observations:
        if obs.state is TrialState.LOST:
            continue
        values = metric_values(spec, obs)
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
    failed_arr = np.array(failed).reshape(-1, d)
    if len(failed_arr) > MAX_TRAINING_POINTS:
        pick = np.random.default_rng(seed).choice(
            len(failed_arr), MAX_TRAINING_POINTS, replace=False
        )
        failed_arr = failed_arr[np.sort(pick)]
    y = (
        np.column_stack([warp_column(raw_arr[:, j], m.goal) for j, m in enumerate(spec.metrics)])
        if len(raw_arr)
        else raw_arr
    )
    return TrainingData(
        x=x_arr,
        y=y.reshape(-1, len(spec.metrics)),
        failed_x=failed_arr,
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

    The model is BoTorch's SingleTaskGP with a Matern-5/2 ARD kernel under the
    dimension-scaled log-normal lengthscale prior (Hvarfner et al., 2024), a constant mean
    and Gaussian noise. Matern-5/2 rather than BoTorch's default RBF: the RBF kernel grows
    overconfident a short distance from the data (on Branin, a wrong incumbent on the edge
    of the box was re-measured to the end), and Matern-5/2 had the lower regret in
    bench_optimizer. The fit is our own (`map_hyperparameters`): the same MAP objective in
    numpy with its gradient written out, far cheaper than the generic GPyTorch path on
    small data, where per-operation overhead dominates.
    """
    batch = torch.Size([y.shape[-1]]) if y.shape[-1] > 1 else torch.Size()
    covar = get_covar_module_with_dim_scaled_prior(
        ard_num_dims=x.shape[-1], batch_shape=batch, use_rbf_kernel=KERNEL == "rbf"
    )
    model = SingleTaskGP(x, y, covar_module=covar, outcome_transform=Standardize(m=y.shape[-1]))
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


def kernel_of_distance(squared_distance: ArrayT) -> ArrayT:
    """The kernel, as GPyTorch computes it (unit output scale), from squared distances r^2
    between lengthscale-scaled inputs: numpy arrays in the fit and the acquisition search
    (acquisition.py), torch tensors where the tests differentiate it with autograd to check the
    derivatives written out here and there."""
    xp: Any = torch if isinstance(squared_distance, torch.Tensor) else np
    if KERNEL == "rbf":
        return xp.exp(-0.5 * squared_distance)
    # Matern-5/2; the small offset keeps the gradient of the distance finite at zero.
    s5 = math.sqrt(5.0) * xp.sqrt(squared_distance + DISTANCE_OFFSET)
    return (1.0 + s5 + s5**2 / 3.0) * xp.exp(-s5)


def kernel_slope(squared_distance: np.ndarray) -> np.ndarray:
    """c(r) in the kernel's derivative d k(z1, z2) / d z1 = -c(r) (z1 - z2), from the squared
    distances r^2 between lengthscale-scaled inputs (for derivatives written out by hand)."""
    if KERNEL == "rbf":
        return np.exp(-0.5 * squared_distance)
    s5 = math.sqrt(5.0) * np.sqrt(squared_distance + DISTANCE_OFFSET)
    return (5.0 / 3.0) * (1.0 + s5) * np.exp(-s5)


@dataclass(frozen=True)
class Hyperparameters:
    lengthscale: torch.Tensor  # (d,)
    noise: torch.Tensor  # (1,)
    constant: torch.Tensor  # ()


def _lengthscale_prior(d: int) -> tuple[float, float]:
    """Location and scale of the dimension-scaled log-normal lengthscale prior."""
    return math.sqrt(2.0) + 0.5 * math.log(d), math.sqrt(3.0)


def map_objective(
    x_np: np.ndarray, y_np: np.ndarray
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The fit's objective: theta = (log-lengthscales (d), log-noise, constant mean) ->
    the negative log posterior per point and its gradient, written out (numpy on these
    small matrices costs a fraction of torch's per-operation overhead and autograd's).
    Infinite, with a zero gradient, where the kernel matrix is not positive definite."""
    n, d = x_np.shape
    ls_loc, ls_scale = _lengthscale_prior(d)
    diff2 = (x_np[:, None, :] - x_np[None, :, :]) ** 2  # (n, n, d)
    eye = np.eye(n)

    def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_ls, log_noise, constant = theta[:d], theta[d], theta[d + 1]
        scaled2 = diff2 / np.exp(2.0 * log_ls)  # (n, n, d)
        squared = scaled2.sum(axis=-1)
        noise = math.exp(log_noise)
        try:
            chol = scipy.linalg.cholesky(
                kernel_of_distance(squared) + noise * eye, lower=True, check_finite=False
            )
        except np.linalg.LinAlgError:
            return float("inf"), np.zeros_like(theta)
        r = y_np - constant
        alpha = scipy.linalg.cho_solve((chol, True), r, check_finite=False)
        log_lik = (
            -0.5 * r @ alpha - np.log(np.diagonal(chol)).sum() - 0.5 * n * math.log(2 * math.pi)
        )
        log_prior = (
            (-log_ls - 0.5 * ((log_ls - ls_loc) / ls_scale) ** 2).sum()
            + (NOISE_PRIOR_CONCENTRATION - 1) * log_noise
            - NOISE_PRIOR_RATE * noise
        )
        # d log_lik / d K = (alpha alpha^T - K^-1) / 2; d K / d log_ls_j = c(r) (z_i - z_k)_j^2.
        inverse, _ = scipy.linalg.lapack.dpotri(chol, lower=1)  # its lower triangle
        inverse = np.tril(inverse) + np.tril(inverse, -1).T
        inner = np.outer(alpha, alpha) - inverse
        slope = kernel_slope(squared)
        grad = np.empty_like(theta)
        grad[:d] = 0.5 * np.einsum("ik,ikj->j", inner * slope, scaled2)
        grad[:d] += -1.0 - (log_ls - ls_loc) / ls_scale**2
        grad[d] = 0.5 * noise * np.trace(inner) + NOISE_PRIOR_CONCENTRATION - 1
        grad[d] -= NOISE_PRIOR_RATE * noise
        grad[d + 1] = alpha.sum()
        return float(-(log_lik + log_prior) / n), -grad / n

    return value_and_grad


def map_hyperparameters(x: torch.Tensor, y: torch.Tensor) -> Hyperparameters:
    """MAP hyperparameters of a Matern-5/2 (or RBF) ARD GP with a constant mean (unit
    output scale, as the outputs are standardised).

    Maximises log N(y | c, K + s I) + log p(lengthscales) + log p(s) over log-lengthscales,
    log-noise and the constant mean c with L-BFGS-B, starting from the priors' modes (as
    BoTorch does). With BoTorch's own priors and RBF kernel this reproduced
    `fit_gpytorch_mll` to four digits of the marginal likelihood.

    Args:
        x: (n, d) inputs.
        y: (n,) standardised outputs.

    Returns:
        The fitted lengthscales, noise variance and constant mean.
    """
    d = x.shape[1]
    ls_loc, ls_scale = _lengthscale_prior(d)
    # The Gamma prior's mode, clipped to the floor.
    noise_start = math.log(max((NOISE_PRIOR_CONCENTRATION - 1) / NOISE_PRIOR_RATE, MIN_NOISE))
    value_and_grad = map_objective(x.detach().numpy(), y.detach().numpy())

    start = np.concatenate([np.full(d, ls_loc - ls_scale**2), [noise_start], [0.0]])
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
        raise np.linalg.LinAlgError(
            "the GP kernel matrix is singular at every tried hyperparameter"
        )
    theta = torch.tensor(result.x, dtype=x.dtype)
    return Hyperparameters(
        lengthscale=torch.exp(theta[:d]), noise=torch.exp(theta[d : d + 1]), constant=theta[d + 1]
    )
