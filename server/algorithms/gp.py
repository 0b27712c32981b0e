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
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import _log_ei_helper
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
from torch.nn.functional import softplus

from tunewire.server.algorithms.base import SuggestRequest, derived_seed
from tunewire.server.algorithms.gp_model import (
    DTYPE,
    TrainingData,
    fit_objective_model,
    kernel_matrix,
    kernel_slope,
    training_data,
)
from tunewire.server.algorithms.random_search import SobolSearch, sobol_points
from tunewire.server.encoding import ModelEncoding, encode_every_parameter
from tunewire.server.space import Params, SearchSpace

logger = logging.getLogger(__name__)

# Acquisition optimisation budget. Set for latency (a suggestion in ~0.1-0.3 s on one
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
    # the others pending (Hartmann6, 30 trials: 0.33 s each for 4 and 0.29 s for 32, against
    # about 0.2 s), and nobody gets an answer until the whole batch is done: concurrent
    # workers are answered one at a time.
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
    bounded below by the candidate's own analytic value.
    Both are a few lines of torch on a Cholesky factor computed once, about twenty times
    cheaper per call than a GPyTorch posterior plus qLogNoisyEI, and the acquisition
    search makes hundreds of calls per suggestion. The baseline's best value is the
    posterior mean's (a plug-in for the noisy incumbent, as the observations here are
    near-noiseless or their noise is fitted).
    """

    def __init__(
        self,
        model: SingleTaskGP,
        x_baseline: torch.Tensor,
        x_pending: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        train_x = model.train_inputs[0].detach()
        train_y = model.train_targets.detach()
        noise = model.likelihood.noise.detach().reshape(-1)[0]
        self._lengthscale = model.covar_module.lengthscale.detach().reshape(-1)
        self._constant = model.mean_module.constant.detach()
        self._z = train_x / self._lengthscale
        k = kernel_matrix(self._z, self._z)
        self._chol = torch.linalg.cholesky(k + noise * torch.eye(len(k), dtype=k.dtype))
        self._alpha = torch.cholesky_solve((train_y - self._constant).unsqueeze(-1), self._chol)
        with torch.no_grad():
            k_baseline = kernel_matrix(x_baseline / self._lengthscale, self._z)
            self._best_f = self._mean(k_baseline).max()
        self._pending = x_pending if x_pending is not None else train_x[:0]
        if len(self._pending):
            engine = torch.quasirandom.SobolEngine(len(self._pending) + 1, scramble=True, seed=seed)
            uniform = engine.draw(MC_SAMPLES, dtype=DTYPE).clamp(1e-6, 1 - 1e-6)
            self._base_samples = torch.distributions.Normal(0.0, 1.0).icdf(uniform)
            # The pending trials' part of the joint posterior is the same for every
            # candidate: computed once here, not at each of the search's hundreds of calls.
            with torch.no_grad():
                self._z_pending = self._pending / self._lengthscale
                k_pending = kernel_matrix(self._z_pending, self._z)  # (k, n)
                self._mean_pending = self._mean(k_pending)  # (k,)
                self._v_pending = torch.linalg.solve_triangular(
                    self._chol, k_pending.T, upper=False
                )  # (n, k)
                self._cov_pending = (
                    kernel_matrix(self._z_pending, self._z_pending)
                    - self._v_pending.T @ self._v_pending
                    + JITTER * torch.eye(len(self._pending), dtype=DTYPE)
                )  # (k, k)

    def _mean(self, k_star: torch.Tensor) -> torch.Tensor:
        """Posterior mean from the kernel (..., n) between points and training inputs."""
        return self._constant + (k_star @ self._alpha).squeeze(-1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """X: (b, 1, D) candidates -> (b,) log expected improvement (standardised scale)."""
        z = X[:, 0, :] / self._lengthscale  # (b, D)
        k_star = kernel_matrix(z, self._z)  # (b, n)
        mean = self._mean(k_star)  # (b,)
        # One solve with b right-hand sides: a batched solve would copy the factor b times.
        v = torch.linalg.solve_triangular(self._chol, k_star.T, upper=False)  # (n, b)
        variance = kernel_matrix(z[:, None, :], z[:, None, :])[:, 0, 0] - (v * v).sum(0)
        sigma = variance.clamp_min(1e-12).sqrt()
        alone = _LogH.apply((mean - self._best_f) / sigma) + sigma.log()
        if not len(self._pending):
            return alone
        joint = _JointLogImprovement.apply(z, v, mean, variance, self)
        # The batch's improvement is at least the candidate's own, known exactly; where
        # improvement is rare the Monte-Carlo estimate falls to its smoothing floor and
        # this bound keeps the far field informative.
        return torch.maximum(joint, alone)


class _JointLogImprovement(torch.autograd.Function):
    """Monte-Carlo log expected improvement of (candidate + pending trials), one batch per
    candidate, with fixed base samples and the derivative written out.

    The value is that of BoTorch's qLogEI (log_fatplus of the improvements, a fatmax over
    the batch, a logmeanexp over the samples), to rounding. The joint posterior is built
    and factored here with the candidate first: its own scale, the pending trials'
    loadings on its draw, and the factor of their covariance given it (the pending block
    is the same for every candidate). Through autograd the same arithmetic took about 1.6
    times as long (the pending part of a call, six candidates or 640), mostly in the
    bookkeeping of some sixty small operations and of BoTorch's infinity-safe helpers,
    which finite inputs never need; and the acquisition search calls it hundreds of times
    per suggestion.

    Inputs: the scaled candidates z (b, D), their solves against the training factor v
    (n, b), their posterior mean and variance (b,), and the acquisition holding the
    pending trials' constants. Returns (b,).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        z: torch.Tensor,
        v: torch.Tensor,
        mean: torch.Tensor,
        variance: torch.Tensor,
        acq: FastLogExpectedImprovement,
    ) -> torch.Tensor:
        base = acq._base_samples  # (s, 1 + k)
        first, others = base[:, 0], base[:, 1:]
        k = others.shape[1]
        # The joint posterior, factored with the candidate first.
        cross = kernel_matrix(z, acq._z_pending) - v.T @ acq._v_pending  # (b, k)
        positive = variance > 0
        scale = (variance.clamp_min(0.0) + JITTER).sqrt()  # (b,)
        loading = cross / scale[:, None]  # (b, k)
        given = acq._cov_pending - loading[:, :, None] * loading[:, None, :]  # (b, k, k)
        if k == 1:
            rest = given.clamp_min(JITTER).sqrt()
        else:
            rest, _ = torch.linalg.cholesky_ex(given)
        candidate = mean[:, None] + scale[:, None] * first  # (b, s)
        pending = (
            acq._mean_pending
            + loading[:, None, :] * first[:, None]
            + others @ rest.transpose(-1, -2)
        )  # (b, s, k)
        samples = torch.cat([candidate[..., None], pending], dim=-1)  # (b, s, 1 + k)
        # log_fatplus(samples - best, TAU_RELU), as BoTorch computes it.
        u = (samples - acq._best_f) / TAU_RELU
        cauchy = 1 / (1 + u.square())
        fat = softplus(u) + 0.1 * cauchy
        log_improvement = (TAU_RELU * fat).log()
        # fatmax over the batch (BoTorch's Pareto tail with alpha = 2).
        top = log_improvement.amax(dim=-1, keepdim=True)
        w = -(log_improvement - top) / TAU_MAX
        tail = 2.0 / (2.0 + 2.0 * w + w.square())
        tail_sum = tail.sum(dim=-1, keepdim=True)
        per_sample = top + TAU_MAX * tail_sum.log()  # (b, s, 1)
        out = torch.logsumexp(per_sample, dim=-2).squeeze(-1) - math.log(base.shape[0])
        ctx.acq = acq
        # The input through save_for_backward; intermediates on ctx, as torch allows.
        ctx.save_for_backward(z)
        ctx.factor = (positive, scale, loading, given, rest)
        ctx.samples = (u, cauchy, fat, log_improvement, top, w, tail, tail_sum, per_sample)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        acq = ctx.acq
        (z,) = ctx.saved_tensors
        positive, scale, loading, given, rest = ctx.factor
        u, cauchy, fat, log_improvement, top, w, tail, tail_sum, per_sample = ctx.samples
        base = acq._base_samples
        first, others = base[:, 0], base[:, 1:]
        k = others.shape[1]
        weight = torch.softmax(per_sample, dim=-2) * grad[:, None, None]  # (b, s, 1)
        # d per_sample / d log_improvement_j with the top held, then the top's share,
        # split between ties as autograd's amax does.
        direct = tail.square() * (1 + w) / tail_sum
        at_top = (log_improvement == top).to(log_improvement.dtype)
        at_top = at_top / at_top.sum(dim=-1, keepdim=True)
        d_log = weight * (direct + at_top * (1 - direct.sum(dim=-1, keepdim=True)))
        d_samples = d_log * (torch.sigmoid(u) - 0.2 * u * cauchy.square()) / fat / TAU_RELU
        d_candidate, d_pending = d_samples[..., 0], d_samples[..., 1:]
        d_mean = d_candidate.sum(dim=-1)
        d_scale = d_candidate @ first
        d_loading = (d_pending * first[:, None]).sum(dim=-2)  # (b, k)
        d_rest = d_pending.transpose(-1, -2) @ others  # (b, k, k)
        # Back through the factor of the pending block given the candidate.
        if k == 1:
            d_given = torch.where(given > JITTER, 0.5 * d_rest / rest, 0.0)
        else:  # as torch's cholesky_backward
            phi = (rest.transpose(-1, -2) @ d_rest.tril()).tril()
            phi = phi - 0.5 * torch.diag_embed(phi.diagonal(dim1=-2, dim2=-1))
            d_given = torch.linalg.solve_triangular(
                rest.transpose(-1, -2), phi, upper=True
            )  # rest^-T phi
            d_given = torch.linalg.solve_triangular(rest, d_given, upper=False, left=False)
            d_given = 0.5 * (d_given + d_given.transpose(-1, -2))
        d_loading = d_loading - 2.0 * (d_given @ loading[:, :, None]).squeeze(-1)
        d_cross = d_loading / scale[:, None]
        d_scale = d_scale - (d_loading * loading).sum(dim=-1) / scale
        d_variance = torch.where(positive, 0.5 * d_scale / scale, 0.0)
        d_v = -acq._v_pending @ d_cross.T  # (n, b)
        # The kernel's derivative: d k(z, p) / dz = -c(r) (z - p).
        diff = z[:, None, :] - acq._z_pending[None, :, :]  # (b, k, D)
        slope = kernel_slope(diff.square().sum(dim=-1))  # (b, k)
        d_z = -((d_cross * slope)[:, :, None] * diff).sum(dim=1)
        return d_z, d_v, d_mean, d_variance, None


class _LogH(torch.autograd.Function):
    """log h(u), h(u) = phi(u) + u Phi(u): expected improvement in units of sigma, by
    BoTorch's stable `_log_ei_helper`, with its derivative Phi(u) / h(u) written out.
    Autograd through the helper's branches costs twice as much per call, and the
    acquisition search differentiates it at each of its hundreds of steps."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor) -> torch.Tensor:
        out = _log_ei_helper(u)
        ctx.save_for_backward(u, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        u, out = ctx.saved_tensors
        return grad * torch.exp(torch.special.log_ndtr(u) - out)


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
    active = encoding.with_activity(x.reshape(-1, d)).reshape(b, q, d)
    out = []
    with torch.no_grad():
        for start in range(0, b, EVAL_CHUNK):
            chunk = torch.tensor(active[start : start + EVAL_CHUNK], dtype=DTYPE)
            out.append(acq(chunk).detach().numpy())
    values = np.concatenate(out)
    return np.where(np.isfinite(values), values, -np.inf)


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
    mask = torch.tensor(encoding.active_mask(x.reshape(-1, d)).reshape(r, q, d)[..., cols])
    fixed = torch.tensor(active, dtype=DTYPE)
    inactive = torch.tensor(encoding.inactive_values[cols], dtype=DTYPE)

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        zt = torch.tensor(z.reshape(r, q, len(cols)), dtype=DTYPE, requires_grad=True)
        full = fixed.clone()
        full[..., cols] = torch.where(mask, zt, inactive)
        total = -acq(full).sum()
        (grad,) = torch.autograd.grad(total, zt)
        g = grad.numpy().ravel()
        return float(total.detach()), np.where(np.isfinite(g), g, 0.0)

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
