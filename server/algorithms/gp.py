"""The default algorithm: Bayesian optimisation with BoTorch Gaussian processes.

A pure function of (spec, history, pending, seed): scrambled Sobol points until the study
has enough trials, then a GP fit (gp_model.py) and log expected improvement — analytic
for one candidate, Monte-Carlo qLogEI jointly with the running trials, BoTorch's
qLogNoisyExpectedImprovement for a batch asked at once, and
qLogNoisyExpectedHypervolumeImprovement for several metrics — maximised over the mixed
search space by alternating gradient steps on continuous columns with exhaustive moves
on integer, discrete and categorical ones, so that every scored candidate is a valid
configuration (rounding happens inside the optimisation, not after it).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import TAU_MAX, TAU_RELU, qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.exceptions.errors import BotorchError
from botorch.models import SingleTaskGP
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from linear_operator.utils.errors import NanError, NotPSDError
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

from tunewire.server.algorithms.base import SuggestRequest, derived_seed
from tunewire.server.algorithms.gp_model import (
    DTYPE,
    TrainingData,
    fit_objective_model,
    kernel_of_distance,
    kernel_slope,
    training_data,
)
from tunewire.server.algorithms.random_search import SobolSearch, sobol_points
from tunewire.server.encoding import ModelEncoding, encode_every_parameter
from tunewire.server.space import Params, SearchSpace

logger = logging.getLogger(__name__)

# Acquisition optimisation budget. Set for latency (a suggestion in ~0.02-0.1 s on one
# thread) and kept because the benchmark regrets meet their targets with it; larger
# budgets were not measured to help.
RAW_SAMPLES = 512
# Share of the raw samples drawn around the best trials rather than from Sobol: the
# optimum of EI is usually near the incumbent once the model is confident.
LOCAL_SAMPLE_SHARE = 0.25
NUM_RESTARTS = 6
LBFGS_MAX_ITERATIONS = 60
LOCAL_SEARCH_ROUNDS = 4
MC_SAMPLES = 128
EVAL_CHUNK = 512
# Draws per array in the joint acquisition's scoring (candidates x batch members x draws):
# about 128 KB of doubles, under glibc's threshold for serving an allocation by mmap.
# Larger arrays came fresh from the kernel and were page-faulted in on every call: 512
# candidates with one running trial took 10.8 ms at once and 4.4 ms in chunks of 64.
JOINT_CHUNK_DRAWS = 16384
# Encoded-space distance (max over columns) under which two candidates count as the same.
DUPLICATE_TOLERANCE = 3e-4
# Added to the variances of the joint posterior of a candidate and the running trials.
JITTER = 1e-8

# Errors that mean "the numbers went bad" (singular kernels, NaNs, failed line searches):
# the suggestion falls back to the Sobol sequence and the event is logged.
NUMERICAL_ERRORS: tuple[type[BaseException], ...] = (
    NotPSDError,
    NanError,
    BotorchError,
    np.linalg.LinAlgError,
    ArithmeticError,
    RuntimeError,
    ValueError,
)


def default_initial_trials(space: SearchSpace) -> int:
    """Sobol trials before the first GP suggestion when the spec leaves it at 0.

    Few enough that the model starts learning early at small budgets, enough that the
    first fit sees every dimension vary: max(5, d + 2), at most 10 (d = parameters).
    """
    return min(max(5, len(space) + 2), 10)


class _SingleThreadedBlas:
    """Runs numpy/SciPy's BLAS (OpenBLAS) on one thread while any suggestion is computed.

    The matrices here are tiny (hundreds of rows at most), so BLAS threads never speed a
    suggestion up, but OpenBLAS threads spin after every call and, with torch's OpenMP
    threads spinning too, a suggestion on the digits-mlp space (10-24 trials) took 1.3 s
    and 2.6 s of CPU on two idle cores instead of 0.2 s, and 3.6 s next to two busy
    trainers, whose CPU it took (benchmarks/RESULTS.md, bench_trainers). The limit is
    process-wide, so concurrent suggestions share it: the first to enter sets it, the
    last to leave restores it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: ThreadpoolController | None = None
        self._limit: Any = None  # threadpoolctl's limiter of the current holders

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                if self._controller is None:  # after numpy/SciPy loaded their BLAS
                    self._controller = ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._limit.restore_original_limits()
                    self._limit = None


single_threaded_blas = _SingleThreadedBlas()


class GaussianProcessSearch:
    """Sobol initial design, then GP-based Bayesian optimisation (see the module doc).

    Trials that count toward the initial design: every finished, failed or infeasible
    trial (user-added ones included) plus the pending ones; LOST trials do not count and
    are not modelled. If anything in the fit or the acquisition fails numerically, the
    suggestion is the study's next Sobol point and a warning is logged: a worker never
    sees an error from the optimiser.
    """

    # A jointly optimised batch costs more CPU per suggestion than single suggestions with
    # the others pending (Hartmann6, 30 trials: 0.12 s each for a batch of 4, against
    # 0.07 s for one with 3 running), and nobody gets an answer until the whole batch is
    # done: concurrent workers are answered one at a time.
    combine_asks = False

    def suggest(self, request: SuggestRequest) -> list[Params]:
        if request.count <= 0:
            return []
        if not _ready_for_model(request):
            return SobolSearch().suggest(request)
        try:
            with single_threaded_blas():
                return suggest_with_gp(request)
        except NUMERICAL_ERRORS as error:
            logger.warning(
                "GP suggestion failed numerically for trial index %d (%s: %s); "
                "falling back to the Sobol sequence",
                request.trial_index,
                type(error).__name__,
                error,
            )
            return SobolSearch().suggest(request)


def _ready_for_model(request: SuggestRequest) -> bool:
    """Whether the initial design is complete and there are results to fit."""
    spec = request.spec
    n_init = spec.initial_trials or default_initial_trials(spec.space)
    counted = [o for o in request.observations if o.state.finished]
    with_results = [o for o in counted if o.metrics is not None]
    return len(counted) + len(request.pending) >= n_init and len(with_results) >= 2


def suggest_with_gp(request: SuggestRequest) -> list[Params]:
    """Fits the model(s) and maximises the acquisition; raises on numerical failure."""
    spec = request.spec
    encoding = ModelEncoding(spec.space)
    seed = derived_seed(spec.seed, request.trial_index, 0x6770)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        data = training_data(spec, encoding, request.observations, seed)
        if len(data.x) < 2:
            raise ValueError("fewer than two trials with results to fit")
        model, n_objectives = _fit_models(data)
        pending = [encoding.encode(p) for p in request.pending]
        factory = _acquisition_factory(model, data, n_objectives, seed)
        rng = np.random.default_rng(seed)
        points = _optimise_batch(factory, encoding, data, pending, request.count, rng, seed)
    return [encoding.decode(row) for row in encoding.with_activity(points)]


def _fit_models(data: TrainingData) -> tuple[SingleTaskGP, int]:
    """The objective model; failed and infeasible trials enter it at the worst value seen.

    That penalty, rather than a separate feasibility model, was chosen by benchmark
    (benchmarks/RESULTS.md, "failed regions"): a GP regression on pass/fail labels has
    short lengthscales at the edge of a failing region and leaves the far side uncertain,
    where an extrapolating objective then lures the search; with the penalty the objective
    model itself sees the failing region as bad, and both regret and failures dropped.
    """
    x = torch.tensor(data.x, dtype=DTYPE)
    y = torch.tensor(data.y, dtype=DTYPE)
    if len(data.failed_x):
        x = torch.cat([x, torch.tensor(data.failed_x, dtype=DTYPE)])
        worst = y.min(dim=0).values.expand(len(data.failed_x), -1)
        y = torch.cat([y, worst])
    return fit_objective_model(x, y), y.shape[-1]


def _acquisition_factory(
    model: SingleTaskGP, data: TrainingData, n_objectives: int, seed: int
) -> Callable[[np.ndarray, int], AcquisitionFunction]:
    """A function of the pending points (encoded) and the batch size q that builds the
    acquisition function.

    The baseline is the trials with results (not the penalised failures), so the
    improvement is measured against configurations that actually worked. One objective
    and one candidate at a time (every suggestion but the joint refinement of a batch)
    take the fast path, `FastLogExpectedImprovement`: it replaced qLogNoisyEI there and
    cut a suggestion's latency about threefold with no loss of regret
    (benchmarks/RESULTS.md, "GP design choices").
    """
    x = torch.tensor(data.x, dtype=DTYPE)

    def build(pending: np.ndarray, q: int) -> AcquisitionFunction:
        pending_t = torch.tensor(pending, dtype=DTYPE).reshape(-1, x.shape[-1])
        if n_objectives == 1 and q == 1:
            return FastLogExpectedImprovement(model, x, pending_t, seed % 2**31)
        x_pending = pending_t if len(pending_t) else None
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed % 2**31)
        if n_objectives == 1:
            return qLogNoisyExpectedImprovement(
                model,
                X_baseline=x,
                sampler=sampler,
                X_pending=x_pending,
                prune_baseline=True,
                cache_root=True,
            )
        y = torch.tensor(data.y, dtype=DTYPE)
        ref_point = infer_reference_point(y[is_non_dominated(y)])
        return qLogNoisyExpectedHypervolumeImprovement(
            model,
            ref_point=ref_point,
            X_baseline=x,
            sampler=sampler,
            X_pending=x_pending,
            prune_baseline=True,
            cache_root=True,
        )

    return build


class FastLogExpectedImprovement(AcquisitionFunction):
    """Log expected improvement of one candidate, jointly with the pending trials, over
    the best posterior mean at the baseline trials: a single-objective fast path.

    Without pending trials it is the analytic LogEI: BoTorch's
    `LogExpectedImprovement(model, best_f)` up to a constant, as it is computed on the
    standardised scale (tested against BoTorch's). With pending trials it is the
    Monte-Carlo qLogEI of the batch (candidate + pending) with fixed quasi-random base
    samples, as BoTorch's `qLogExpectedImprovement(X_pending=...)` computes it (the
    candidate is worth what it adds to what the running trials are expected to bring),
    bounded below by the candidate's own analytic value. The baseline's best value is the
    posterior mean's (a plug-in for the noisy incumbent, as the observations here are
    near-noiseless or their noise is fitted).

    The acquisition search calls it hundreds of times per suggestion on a few candidates,
    so it is numpy on a Cholesky factor computed once, with the derivative written out
    (`values_and_gradients`). A call on six candidates (24 trials, 16 columns) takes
    0.09 / 0.36 / 0.52 ms with 0 / 1 / 3 running trials, against 0.76 / 1.46 / 1.65 ms for
    the same arithmetic in torch with autograd, which was nearly all per-operation
    bookkeeping. `forward` wraps it for torch callers.
    """

    def __init__(
        self,
        model: SingleTaskGP,
        x_baseline: torch.Tensor,
        x_pending: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        train_x = model.train_inputs[0].detach().numpy()
        train_y = model.train_targets.detach().numpy()
        noise = float(model.likelihood.noise.detach().reshape(-1)[0])
        self._lengthscale = model.covar_module.lengthscale.detach().reshape(-1).numpy()
        self._constant = float(model.mean_module.constant.detach())
        self._z = train_x / self._lengthscale
        k = _kernel(self._z, self._z)
        self._chol = np.linalg.cholesky(k + noise * np.eye(len(k)))
        self._alpha = scipy.linalg.cho_solve((self._chol, True), train_y - self._constant)
        self._prior_variance = float(kernel_of_distance(np.zeros(())))
        baseline = x_baseline.detach().numpy() / self._lengthscale
        self._best_f = float(self._mean(_kernel(baseline, self._z)).max())
        self._pending = (
            x_pending.detach().numpy() if x_pending is not None else train_x[:0]
        ).reshape(-1, train_x.shape[1])
        if len(self._pending):
            engine = torch.quasirandom.SobolEngine(len(self._pending) + 1, scramble=True, seed=seed)
            uniform = engine.draw(MC_SAMPLES, dtype=DTYPE).clamp(1e-6, 1 - 1e-6)
            self._base_samples = torch.distributions.Normal(0.0, 1.0).icdf(uniform).numpy()
            # The pending trials' part of the joint posterior is the same for every
            # candidate: computed once here, not at each of the search's hundreds of calls.
            self._z_pending = self._pending / self._lengthscale
            k_pending = _kernel(self._z_pending, self._z)  # (k, n)
            self._mean_pending = self._mean(k_pending)  # (k,)
            self._v_pending = _lower_solve(self._chol, k_pending.T)  # (n, k)
            self._cov_pending = (
                _kernel(self._z_pending, self._z_pending)
                - self._v_pending.T @ self._v_pending
                + JITTER * np.eye(len(self._pending))
            )  # (k, k)

    def _mean(self, k_star: np.ndarray) -> np.ndarray:
        """Posterior mean from the kernel (..., n) between points and training inputs."""
        return self._constant + k_star @ self._alpha

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """X: (b, 1, D) candidates -> (b,) log expected improvement (standardised scale)."""
        return _NumpyAcquisition.apply(X, self)

    @property
    def chunk(self) -> int:
        """Candidates per call when scoring many: with running trials, as many as keep the
        joint's arrays at JOINT_CHUNK_DRAWS draws."""
        if not len(self._pending):
            return EVAL_CHUNK
        return max(8, JOINT_CHUNK_DRAWS // (MC_SAMPLES * (1 + len(self._pending))))

    def values_and_gradients(
        self, x: np.ndarray, gradients: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """x: (b, D) candidates -> their values (b,) and, if asked, d value / d x (b, D)."""
        z = x / self._lengthscale
        diff = z[:, None, :] - self._z[None, :, :]  # (b, n, D)
        squared = np.einsum("bnd,bnd->bn", diff, diff)
        k_star = kernel_of_distance(squared)  # (b, n)
        mean = self._mean(k_star)  # (b,)
        v = _lower_solve(self._chol, k_star.T)  # (n, b)
        variance = self._prior_variance - np.einsum("nb,nb->b", v, v)
        sigma = np.sqrt(np.maximum(variance, 1e-12))
        u = (mean - self._best_f) / sigma
        log_h = _log_h(u)
        alone = log_h + np.log(sigma)
        joint: _Joint | None = None
        values = alone
        if len(self._pending):
            joint = _Joint(self, z, v, mean, variance)
            # The batch's improvement is at least the candidate's own, known exactly; where
            # improvement is rare the Monte-Carlo estimate falls to its smoothing floor and
            # this bound keeps the far field informative.
            values = np.maximum(joint.values, alone)
        if not gradients:
            return values, None
        # d alone / d mean and d variance, through log h(u) + log sigma.
        d_log_h = np.exp(scipy.special.log_ndtr(u) - log_h)
        d_mean = d_log_h / sigma
        d_variance = np.where(variance >= 1e-12, 0.5 * (1.0 - d_log_h * u) / sigma**2, 0.0)
        d_v = np.zeros_like(v)
        d_z = np.zeros_like(z)
        if joint is not None:
            # torch.maximum's derivative: the larger side, half each on a tie.
            share = (joint.values > alone) + 0.5 * (joint.values == alone)
            j_z, j_v, j_mean, j_variance = joint.gradients()
            d_mean = (1.0 - share) * d_mean + share * j_mean
            d_variance = (1.0 - share) * d_variance + share * j_variance
            d_v = share * j_v
            d_z = share[:, None] * j_z
        # Back through variance = prior - |v|^2, v = L^-1 k_star and mean = c + k_star alpha.
        d_v = d_v - 2.0 * v * d_variance
        d_k_star = d_mean[:, None] * self._alpha + _upper_solve(self._chol.T, d_v).T  # (b, n)
        d_z = d_z - np.einsum("bn,bnd->bd", d_k_star * kernel_slope(squared), diff)
        return values, d_z / self._lengthscale


class _Joint:
    """Monte-Carlo log expected improvement of (candidate + pending trials), one batch per
    candidate, with fixed base samples, and its derivative written out.

    The value is that of BoTorch's qLogEI (log_fatplus of the improvements, a fatmax over
    the batch, a logmeanexp over the samples), to rounding. The joint posterior is built
    and factored here with the candidate first: its own scale, the pending trials'
    loadings on its draw, and the factor of their covariance given it (the pending block
    is the same for every candidate).

    Inputs: the scaled candidates z (b, D), their solves against the training factor v
    (n, b), their posterior mean and variance (b,), and the acquisition holding the
    pending trials' constants. The samples are laid out (batch member, candidate, draw),
    so that the fatmax's reductions over the few batch members run along whole arrays
    (over a short last axis numpy reduces element by element, several times slower).
    """

    def __init__(
        self,
        acq: FastLogExpectedImprovement,
        z: np.ndarray,
        v: np.ndarray,
        mean: np.ndarray,
        variance: np.ndarray,
    ) -> None:
        self.acq = acq
        base = acq._base_samples  # (s, 1 + k)
        first, others = base[:, 0], base[:, 1:]
        k = others.shape[1]
        # The joint posterior, factored with the candidate first.
        self.diff = z[:, None, :] - acq._z_pending[None, :, :]  # (b, k, D)
        self.squared = np.einsum("bkd,bkd->bk", self.diff, self.diff)
        cross = kernel_of_distance(self.squared) - v.T @ acq._v_pending  # (b, k)
        self.positive = variance > 0
        self.scale = np.sqrt(np.maximum(variance, 0.0) + JITTER)  # (b,)
        self.loading = cross / self.scale[:, None]  # (b, k)
        self.given = acq._cov_pending - self.loading[:, :, None] * self.loading[:, None, :]
        self.rest = np.sqrt(np.maximum(self.given, JITTER)) if k == 1 else _cholesky(self.given)
        candidate = mean[:, None] + self.scale[:, None] * first  # (b, s)
        pending = (
            acq._mean_pending[:, None, None]
            + self.loading.T[:, :, None] * first
            + (self.rest @ others.T).transpose(1, 0, 2)
        )  # (k, b, s)
        samples = np.concatenate([candidate[None], pending])  # (1 + k, b, s)
        # log_fatplus(samples - best, TAU_RELU), as BoTorch computes it (torch's softplus).
        self.u = u = (samples - acq._best_f) / TAU_RELU
        self.cauchy = 1.0 / (1.0 + u * u)
        softplus = np.where(u > 20.0, u, np.log1p(np.exp(np.minimum(u, 20.0))))
        self.fat = softplus + 0.1 * self.cauchy
        self.log_improvement = np.log(TAU_RELU * self.fat)
        # fatmax over the batch (BoTorch's Pareto tail with alpha = 2).
        self.top = self.log_improvement.max(axis=0)  # (b, s)
        self.w = -(self.log_improvement - self.top) / TAU_MAX
        self.tail = 2.0 / (2.0 + 2.0 * self.w + self.w * self.w)
        self.tail_sum = self.tail.sum(axis=0)
        per_sample = self.top + TAU_MAX * np.log(self.tail_sum)  # (b, s)
        # logmeanexp over the draws, and the draws' weights in it.
        peak = per_sample.max(axis=-1, keepdims=True)
        scaled = np.exp(per_sample - peak)
        total = scaled.sum(axis=-1, keepdims=True)
        self.weight = scaled / total  # (b, s)
        self.values = (peak + np.log(total))[:, 0] - math.log(base.shape[0])

    def gradients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """d values / d (z (b, D), v (n, b), mean (b,), variance (b,))."""
        acq = self.acq
        base = acq._base_samples
        first, others = base[:, 0], base[:, 1:]
        k = others.shape[1]
        weight = self.weight
        # d per_sample / d log_improvement_j with the top held, then the top's share,
        # split between ties as torch's amax does.
        direct = self.tail**2 * (1.0 + self.w) / self.tail_sum
        at_top = (self.log_improvement == self.top).astype(float)
        at_top /= at_top.sum(axis=0)
        d_log = weight * (direct + at_top * (1.0 - direct.sum(axis=0)))
        u, cauchy = self.u, self.cauchy
        d_samples = d_log * (scipy.special.expit(u) - 0.2 * u * cauchy**2) / self.fat / TAU_RELU
        d_candidate, d_pending = d_samples[0], d_samples[1:]  # (b, s), (k, b, s)
        d_mean = d_candidate.sum(axis=-1)
        d_scale = d_candidate @ first
        d_loading = np.einsum("kbs,s->bk", d_pending, first)
        d_rest = d_pending.transpose(1, 0, 2) @ others  # (b, k, k)
        # Back through the factor of the pending block given the candidate.
        rest, given = self.rest, self.given
        if k == 1:
            d_given = np.where(given > JITTER, 0.5 * d_rest / rest, 0.0)
        else:  # as torch's cholesky_backward
            phi = np.tril(rest.transpose(0, 2, 1) @ np.tril(d_rest))
            phi -= 0.5 * np.einsum("bij,ij->bij", phi, np.eye(k))
            left = np.linalg.solve(rest.transpose(0, 2, 1), phi)  # rest^-T phi
            d_given = np.linalg.solve(rest.transpose(0, 2, 1), left.transpose(0, 2, 1))
            d_given = d_given.transpose(0, 2, 1)  # rest^-T phi rest^-1
            d_given = 0.5 * (d_given + d_given.transpose(0, 2, 1))
        loading, scale = self.loading, self.scale
        d_loading = d_loading - 2.0 * np.einsum("bij,bj->bi", d_given, loading)
        d_cross = d_loading / scale[:, None]
        d_scale = d_scale - (d_loading * loading).sum(axis=-1) / scale
        d_variance = np.where(self.positive, 0.5 * d_scale / scale, 0.0)
        d_v = -acq._v_pending @ d_cross.T  # (n, b)
        # The kernel's derivative: d k(z, p) / dz = -c(r) (z - p).
        d_z = -np.einsum("bk,bkd->bd", d_cross * kernel_slope(self.squared), self.diff)
        return d_z, d_v, d_mean, d_variance


class _NumpyAcquisition(torch.autograd.Function):
    """`FastLogExpectedImprovement` for torch callers: values, and the written-out
    derivative as the backward."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, acq: FastLogExpectedImprovement) -> torch.Tensor:  # type: ignore[override]
        x = X.detach().numpy()[:, 0, :]
        values, grads = acq.values_and_gradients(x, gradients=X.requires_grad)
        if grads is not None:
            ctx.save_for_backward(torch.from_numpy(grads[:, None, :]))
        return torch.from_numpy(values).to(X.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grads,) = ctx.saved_tensors
        return grad[:, None, None] * grads, None


def _kernel(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    diff = z1[:, None, :] - z2[None, :, :]
    return kernel_of_distance(np.einsum("abd,abd->ab", diff, diff))


def _lower_solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(chol, b, lower=True, check_finite=False)


def _upper_solve(chol_t: np.ndarray, b: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(chol_t, b, lower=False, check_finite=False)


def _cholesky(a: np.ndarray) -> np.ndarray:
    """Lower factors of (b, k, k) covariances; one that rounding left a hair short of
    positive definite is shifted up to JITTER on its smallest eigenvalue."""
    try:
        return np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        low = np.linalg.eigvalsh(a)[:, 0]
        shift = np.where(low < JITTER, JITTER - low, 0.0)
        return np.linalg.cholesky(a + shift[:, None, None] * np.eye(a.shape[-1]))


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_PI_DIV_2 = 0.5 * math.log(math.pi / 2)


def _log_h(u: np.ndarray) -> np.ndarray:
    """log h(u), h(u) = phi(u) + u Phi(u): expected improvement in units of sigma, by the
    branches of BoTorch's stable `_log_ei_helper` (its derivative is Phi(u) / h(u))."""
    upper = u > -1.0
    u_upper = np.where(upper, u, -1.0)
    log_upper = np.log(
        np.exp(-0.5 * u_upper**2) / math.sqrt(2 * math.pi) + u_upper * scipy.special.ndtr(u_upper)
    )
    # Below -1: log phi(u) + log(1 - exp(w)), w = log(|u| Phi(u) / phi(u)).
    u_lower = np.where(upper, -1.0, u)
    u_eps = np.maximum(u_lower, -1e6)
    w = np.log(scipy.special.erfcx(-u_eps / math.sqrt(2.0)) * np.abs(u_eps)) + _LOG_SQRT_PI_DIV_2
    log1mexp = np.where(
        w > -math.log(2.0), np.log(-np.expm1(w)), np.log1p(-np.exp(np.minimum(w, 0.0)))
    )
    log_lower = (
        -0.5 * u**2 - _LOG_SQRT_2PI + np.where(u > -1e6, log1mexp, -2.0 * np.log(np.abs(u_lower)))
    )
    return np.where(upper, log_upper, log_lower)


def _optimise_batch(
    factory: Callable[[np.ndarray, int], AcquisitionFunction],
    encoding: ModelEncoding,
    data: TrainingData,
    pending: Sequence[np.ndarray],
    count: int,
    rng: np.random.Generator,
    seed: int,
) -> np.ndarray:
    """`count` candidates: greedy one at a time (each seeing the previous as pending),
    then, for several, a joint local refinement of the whole batch under the q-batch
    acquisition, which can only raise the batch's joint value."""
    chosen: list[np.ndarray] = []
    base_pending = np.array(pending).reshape(-1, encoding.dim)
    for j in range(count):
        so_far = encoding.with_activity(np.array(chosen).reshape(-1, encoding.dim))
        acq = factory(np.concatenate([base_pending, so_far]), 1)
        taken = np.concatenate([data.x, data.failed_x, base_pending, so_far])
        chosen.append(_optimise_one(acq, encoding, data, taken, rng, seed + j))
    batch = np.array(chosen)
    if count > 1:
        acq = factory(base_pending, count)
        refined, _ = _local_search(acq, encoding, batch[None], None)
        batch = refined[0]
    return batch


def _score(acq: AcquisitionFunction, encoding: ModelEncoding, x: np.ndarray) -> np.ndarray:
    """Acquisition values of candidates x (b, q, D) in the 'every parameter set' form."""
    b, q, d = x.shape
    values = _values(acq, encoding.with_activity(x.reshape(-1, d)).reshape(b, q, d))
    return np.where(np.isfinite(values), values, -np.inf)


def _values(acq: AcquisitionFunction, x: np.ndarray) -> np.ndarray:
    """Values (b,) of many candidates x (b, q, D), a chunk of them per call."""
    step = acq.chunk if isinstance(acq, FastLogExpectedImprovement) else EVAL_CHUNK
    return np.concatenate(
        [
            _values_and_gradients(acq, x[start : start + step], gradients=False)[0]
            for start in range(0, len(x), step)
        ]
    )


def _values_and_gradients(
    acq: AcquisitionFunction, x: np.ndarray, gradients: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Values (b,) of candidates x (b, q, D) and, if asked, their gradients (b, q, D):
    straight in numpy on the fast path, through torch's autograd for BoTorch's
    acquisitions (a jointly refined batch, several metrics)."""
    if isinstance(acq, FastLogExpectedImprovement):
        values, grads = acq.values_and_gradients(x[:, 0, :], gradients)
        return values, None if grads is None else grads[:, None, :]
    xt = torch.tensor(x, dtype=DTYPE, requires_grad=gradients)
    if not gradients:
        with torch.no_grad():
            return acq(xt).numpy(), None
    values_t = acq(xt)
    (grad,) = torch.autograd.grad(values_t.sum(), xt)
    return values_t.detach().numpy(), grad.numpy()


def _raw_candidates(
    encoding: ModelEncoding, data: TrainingData, rng: np.random.Generator, seed: int
) -> np.ndarray:
    """Sobol points plus perturbations of the best trials, all valid, shape (n, D)."""
    n_local = int(RAW_SAMPLES * LOCAL_SAMPLE_SHARE) if len(data.x) else 0
    sobol = sobol_points(len(encoding.space), seed, 0, RAW_SAMPLES - n_local)
    candidates = [encode_every_parameter(encoding, sobol)]
    if n_local:
        primary = data.y[:, 0] if data.y.shape[1] == 1 else _pareto_rank_score(data.y)
        top = data.x[np.argsort(-primary, kind="stable")[:5]]
        top = _fill_inactive(encoding, top, rng)
        local = top[rng.integers(len(top), size=n_local)].copy()
        scale = rng.choice([0.01, 0.05, 0.15], size=(n_local, 1))
        cols = encoding.continuous_columns
        if cols:
            local[:, cols] = np.clip(
                local[:, cols] + rng.normal(size=(n_local, len(cols))) * scale, 0, 1
            )
        for block in encoding.discrete_blocks:
            mutate = rng.random(n_local) < 1.0 / max(1, len(encoding.discrete_blocks))
            for i in np.flatnonzero(mutate):
                options = encoding.choices(block, float(local[i, block.start]))
                local[i, block.start : block.stop] = options[rng.integers(len(options))]
        candidates.append(local)
    return np.concatenate(candidates)


def _pareto_rank_score(y: np.ndarray) -> np.ndarray:
    """A scalar 'goodness' for several objectives: non-dominated first, then mean rank."""
    ranks = np.argsort(np.argsort(y, axis=0), axis=0).mean(axis=1)
    front = is_non_dominated(torch.tensor(y)).numpy()
    return ranks + front * len(y)


def _fill_inactive(encoding: ModelEncoding, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gives inactive one-hot blocks (all zeros) a random choice, so that a move of the
    parent that activates them lands on a valid configuration."""
    x = x.copy()
    for block in encoding.blocks:
        if block.categorical:
            empty = x[:, block.start : block.stop].sum(axis=1) == 0
            k = block.stop - block.start
            for i in np.flatnonzero(empty):
                x[i, block.start + rng.integers(k)] = 1.0
    return x


def _optimise_one(
    acq: AcquisitionFunction,
    encoding: ModelEncoding,
    data: TrainingData,
    taken: np.ndarray,
    rng: np.random.Generator,
    seed: int,
) -> np.ndarray:
    """The best single candidate (D,): raw scoring, then local search from the top few.

    A candidate within DUPLICATE_TOLERANCE of a tried or pending configuration is passed
    over for the next best: with a near-noiseless model the acquisition can keep
    preferring an incumbent on the boundary, re-measuring it to no end (seen on Branin).
    """
    raw = _raw_candidates(encoding, data, rng, seed)
    values = _score(acq, encoding, raw[:, None, :])
    order = np.argsort(-values, kind="stable")
    starts = raw[order[:NUM_RESTARTS]][:, None, :]
    best, best_values = _local_search(acq, encoding, starts, values[order[:NUM_RESTARTS]])
    ranked = np.concatenate([best[np.argsort(-best_values, kind="stable")][:, 0], raw[order]])
    if len(taken):
        near = encoding.with_activity(ranked)[:, None, :] - taken[None, :, :]
        fresh = np.abs(near).max(axis=-1).min(axis=1) > DUPLICATE_TOLERANCE
        if fresh.any():
            return ranked[int(np.argmax(fresh))]
    return ranked[0]


def _local_search(
    acq: AcquisitionFunction,
    encoding: ModelEncoding,
    x: np.ndarray,
    values: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Alternates L-BFGS-B on continuous columns with exhaustive discrete moves until no
    move helps. x: (r, q, D) starts; returns the improved starts and their values."""
    if values is None:
        values = _score(acq, encoding, x)
    for _ in range(LOCAL_SEARCH_ROUNDS):
        before = values.copy()
        if encoding.continuous_columns:
            x, values = _continuous_step(acq, encoding, x, values)
        if not encoding.discrete_blocks:
            break
        x, values = _discrete_step(acq, encoding, x, values)
        if np.all(values <= before + 1e-9 * (1 + np.abs(before))):
            break
    return x, values


def _continuous_step(
    acq: AcquisitionFunction, encoding: ModelEncoding, x: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS-B on the continuous columns of all starts at once (their sum is separable)."""
    cols = encoding.continuous_columns
    r, q, d = x.shape
    active = encoding.with_activity(x.reshape(-1, d)).reshape(r, q, d)
    mask = encoding.active_mask(x.reshape(-1, d)).reshape(r, q, d)[..., cols]
    inactive = encoding.inactive_values[cols]

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        full = active.copy()
        full[..., cols] = np.where(mask, z.reshape(r, q, len(cols)), inactive)
        values, grads = _values_and_gradients(acq, full, gradients=True)
        assert grads is not None
        g = -np.where(mask, grads[..., cols], 0.0).ravel()
        return float(-values.sum()), np.where(np.isfinite(g), g, 0.0)

    z0 = x[..., cols].ravel()
    result = minimize(
        objective,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * len(z0),
        options={"maxiter": LBFGS_MAX_ITERATIONS},
    )
    moved = x.copy()
    moved[..., cols] = np.clip(result.x.reshape(r, q, len(cols)), 0.0, 1.0)
    new_values = _score(acq, encoding, moved)
    better = new_values > values
    return np.where(better[:, None, None], moved, x), np.where(better, new_values, values)


def _discrete_step(
    acq: AcquisitionFunction, encoding: ModelEncoding, x: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each discrete block of each point, tries every allowed value and keeps the best."""
    x = x.copy()
    values = values.copy()
    r, q, _ = x.shape
    for j in range(q):
        for block in encoding.discrete_blocks:
            trials, owners = [], []
            for i in range(r):
                options = encoding.choices(block, float(x[i, j, block.start]))
                tried = np.repeat(x[i][None], len(options), axis=0)
                tried[:, j, block.start : block.stop] = options
                trials.append(tried)
                owners.extend([i] * len(options))
            stacked = np.concatenate(trials)
            scores = _score(acq, encoding, stacked)
            owner = np.array(owners)
            for i in range(r):
                idx = np.flatnonzero(owner == i)
                k = idx[int(np.argmax(scores[idx]))]
                if scores[k] > values[i]:
                    x[i] = stacked[k]
                    values[i] = scores[k]
    return x, values
