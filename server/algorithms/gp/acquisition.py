"""The acquisition functions of the GP: log expected improvement of one candidate, alone or
jointly with the running trials, in numpy with its derivative written out; BoTorch's
q-batch acquisitions for a batch asked at once and for several metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.special
import torch
from botorch.acquisition import AcquisitionFunction, FixedFeatureAcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.models import SingleTaskGP
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated

from tunewire.server.algorithms.gp.joint import MC_SAMPLES, JointLogImprovement
from tunewire.server.algorithms.gp.model import (
    DTYPE,
    TrainingData,
    kernel_of_distance,
    kernel_slope,
)
from tunewire.server.algorithms.gp.numerics import (
    JITTER,
    cholesky,
    kernel,
    log_h,
    lower_solve,
    upper_solve,
)

# Candidates per call when scoring many alone.
EVAL_CHUNK = 512
# Running trials up to which the candidate is scored jointly with them by Monte Carlo;
# beyond, by a believer (`_Believed`), whose cost grows far more slowly with their number:
# with a few workers the joint reaches one worker's regret sooner, with many the believer
# does, and at a lower cost.
MAX_JOINT_PENDING = 8
# Draws per array in the joint acquisition's scoring (candidates x batch members x draws):
# about 128 KB of doubles, under glibc's threshold for serving an allocation by mmap
# (larger arrays come fresh from the kernel and are page-faulted in on every call).
JOINT_CHUNK_DRAWS = 16384


def acquisition_factory(
    model: SingleTaskGP,
    data: TrainingData,
    n_objectives: int,
    seed: int,
    fixed: np.ndarray | None = None,
) -> Callable[[np.ndarray, int], AcquisitionFunction]:
    """A function of the pending points (encoded) and the batch size q that builds the
    acquisition function.

    The baseline is the trials with results (not the penalised failures), so the
    improvement is measured against configurations that actually worked. One objective
    and one candidate at a time (every suggestion but the joint refinement of a batch)
    take the fast path, `FastLogExpectedImprovement`, which computes what qLogNoisyEI
    would at a fraction of the cost.

    `fixed` (one objective only) are values of model inputs beyond the configuration's
    columns, the same for every point scored: the fidelity at which a multi-fidelity model
    is asked (fidelity.py). Baseline, pending points and candidates are all scored there.
    """
    width = data.x.shape[-1]
    x = torch.tensor(with_fixed(data.x, fixed), dtype=DTYPE)

    def build(pending: np.ndarray, q: int) -> AcquisitionFunction:
        pending_t = torch.tensor(
            with_fixed(np.asarray(pending).reshape(-1, width), fixed), dtype=DTYPE
        )
        if n_objectives == 1 and q == 1:
            return FastLogExpectedImprovement(model, x, pending_t, seed % 2**31, fixed)
        x_pending = pending_t if len(pending_t) else None
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed % 2**31)
        if n_objectives == 1:
            acq: AcquisitionFunction = qLogNoisyExpectedImprovement(
                model,
                X_baseline=x,
                sampler=sampler,
                X_pending=x_pending,
                prune_baseline=True,
                cache_root=True,
            )
            if fixed is None:
                return acq
            return FixedFeatureAcquisitionFunction(
                acq,
                d=width + len(fixed),
                columns=list(range(width, width + len(fixed))),
                values=[float(v) for v in fixed],
            )
        if fixed is not None:
            raise ValueError("fixed model inputs are for one objective")
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


def with_fixed(x: np.ndarray, fixed: np.ndarray | None) -> np.ndarray:
    """x (n, D) with the fixed inputs appended to every row (as is without them)."""
    if fixed is None:
        return x
    return np.column_stack([x, np.broadcast_to(fixed, (len(x), len(fixed)))])


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
    (`values_and_gradients`): in torch with autograd the same arithmetic is mostly
    per-operation bookkeeping. `forward` wraps it for torch callers.
    """

    def __init__(
        self,
        model: SingleTaskGP,
        x_baseline: torch.Tensor,
        x_pending: torch.Tensor | None = None,
        seed: int = 0,
        fixed: np.ndarray | None = None,
    ) -> None:
        super().__init__(model)
        # Model inputs appended to every candidate (baseline and pending come with them).
        self._fixed = fixed
        train_x = model.train_inputs[0].detach().numpy()
        train_y = model.train_targets.detach().numpy()
        noise = float(model.likelihood.noise.detach().reshape(-1)[0])
        self._lengthscale = model.covar_module.lengthscale.detach().reshape(-1).numpy()
        self._constant = float(model.mean_module.constant.detach())
        self._z = train_x / self._lengthscale
        k = kernel(self._z, self._z)
        self._chol = np.linalg.cholesky(k + noise * np.eye(len(k)))
        self._alpha = scipy.linalg.cho_solve((self._chol, True), train_y - self._constant)
        self._prior_variance = float(kernel_of_distance(np.zeros(())))
        baseline = x_baseline.detach().numpy() / self._lengthscale
        self._best_f = float(self._mean(kernel(baseline, self._z)).max())
        self._pending = (
            x_pending.detach().numpy() if x_pending is not None else train_x[:0]
        ).reshape(-1, train_x.shape[1])
        # With many running trials, a believer instead of the Monte-Carlo joint (see the
        # class doc): the factor of the running trials' covariance given the history.
        self._believer: np.ndarray | None = None
        if len(self._pending):
            # The pending trials' part of the joint posterior is the same for every
            # candidate: computed once here, not at each of the search's hundreds of calls.
            self._z_pending = self._pending / self._lengthscale
            k_pending = kernel(self._z_pending, self._z)  # (k, n)
            self._mean_pending = self._mean(k_pending)  # (k,)
            self._v_pending = lower_solve(self._chol, k_pending.T)  # (n, k)
            self._cov_pending = (
                kernel(self._z_pending, self._z_pending)
                - self._v_pending.T @ self._v_pending
                + JITTER * np.eye(len(self._pending))
            )  # (k, k)
            if len(self._pending) > MAX_JOINT_PENDING:
                self._believer = cholesky(self._cov_pending[None])[0]
            else:
                engine = torch.quasirandom.SobolEngine(
                    len(self._pending) + 1, scramble=True, seed=seed
                )
                uniform = engine.draw(MC_SAMPLES, dtype=DTYPE).clamp(1e-6, 1 - 1e-6)
                self._base_samples = torch.distributions.Normal(0.0, 1.0).icdf(uniform).numpy()

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
        k = len(self._pending)
        if not k:
            return EVAL_CHUNK
        if self._believer is not None:  # arrays of (candidates, k, D)
            return max(8, JOINT_CHUNK_DRAWS // (k * self._z.shape[1]))
        return max(8, JOINT_CHUNK_DRAWS // (MC_SAMPLES * (1 + k)))

    def values_and_gradients(
        self, x: np.ndarray, gradients: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """x: (b, D) candidates -> their values (b,) and, if asked, d value / d x (b, D)."""
        if self._fixed is not None:
            width = x.shape[1]
            values, grads = self._values_and_gradients(with_fixed(x, self._fixed), gradients)
            return values, None if grads is None else grads[:, :width]
        return self._values_and_gradients(x, gradients)

    def _values_and_gradients(
        self, x: np.ndarray, gradients: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        z = x / self._lengthscale
        diff = z[:, None, :] - self._z[None, :, :]  # (b, n, D)
        squared = np.einsum("bnd,bnd->bn", diff, diff)
        k_star = kernel_of_distance(squared)  # (b, n)
        mean = self._mean(k_star)  # (b,)
        v = lower_solve(self._chol, k_star.T)  # (n, b)
        variance = self._prior_variance - np.einsum("nb,nb->b", v, v)
        believed: _Believed | None = None
        if self._believer is not None:
            believed = _Believed(self, z, v)
            variance = variance - believed.explained
        sigma = np.sqrt(np.maximum(variance, 1e-12))
        u = (mean - self._best_f) / sigma
        log_hu = log_h(u)
        alone = log_hu + np.log(sigma)
        joint: JointLogImprovement | None = None
        values = alone
        if len(self._pending) and believed is None:
            joint = JointLogImprovement(self, z, v, mean, variance)
            # The batch's improvement is at least the candidate's own, known exactly; where
            # improvement is rare the Monte-Carlo estimate falls to its smoothing floor and
            # this bound keeps the far field informative.
            values = np.maximum(joint.values, alone)
        if not gradients:
            return values, None
        # d alone / d mean and d variance, through log h(u) + log sigma.
        d_log_h = np.exp(scipy.special.log_ndtr(u) - log_hu)
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
        if believed is not None:
            b_z, d_v = believed.gradients(d_variance)
            d_z = d_z + b_z
        # Back through variance = prior - |v|^2, v = L^-1 k_star and mean = c + k_star alpha.
        d_v = d_v - 2.0 * v * d_variance
        d_k_star = d_mean[:, None] * self._alpha + upper_solve(self._chol.T, d_v).T  # (b, n)
        d_z = d_z - np.einsum("bn,bnd->bd", d_k_star * kernel_slope(squared), diff)
        return values, d_z / self._lengthscale


class _Believed:
    """The running trials as a believer sees them: observed at their posterior mean, which
    leaves every candidate's mean as it is and takes from its variance what they would
    explain (`explained`). Its cost grows with k^2 per candidate, not with a factor of the
    joint posterior per candidate as the Monte-Carlo joint's does.

    Inputs: the scaled candidates z (b, D) and their solves against the training factor v
    (n, b); `acq` holds the running trials' constants and the believer factor C of their
    covariance given the history.
    """

    def __init__(self, acq: FastLogExpectedImprovement, z: np.ndarray, v: np.ndarray) -> None:
        assert acq._believer is not None
        self.acq = acq
        self.diff = z[:, None, :] - acq._z_pending[None, :, :]  # (b, k, D)
        self.squared = np.einsum("bkd,bkd->bk", self.diff, self.diff)
        cross = kernel_of_distance(self.squared) - v.T @ acq._v_pending  # (b, k)
        self.w = lower_solve(acq._believer, cross.T)  # (k, b)
        self.explained = np.einsum("kb,kb->b", self.w, self.w)

    def gradients(self, d_variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Given d value / d variance (b,), the believer term's d value / d z (b, D) and
        d value / d v (n, b), through explained = |C^-1 cross^T|^2."""
        acq = self.acq
        assert acq._believer is not None
        u = upper_solve(acq._believer.T, self.w) * d_variance  # (k, b)
        d_cross = -2.0 * u.T  # (b, k)
        d_v = -acq._v_pending @ d_cross.T  # (n, b)
        d_z = -np.einsum("bk,bkd->bd", d_cross * kernel_slope(self.squared), self.diff)
        return d_z, d_v


class _NumpyAcquisition(torch.autograd.Function):
    """`FastLogExpectedImprovement` for torch callers: values, and the written-out
    derivative as the backward."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, acq: FastLogExpectedImprovement) -> torch.Tensor:
        x = X.detach().numpy()[:, 0, :]
        values, grads = acq.values_and_gradients(x, gradients=X.requires_grad)
        if grads is not None:
            ctx.save_for_backward(torch.from_numpy(grads[:, None, :]))
        return torch.from_numpy(values).to(X.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grads,) = ctx.saved_tensors
        return grad[:, None, None] * grads, None
