"""Monte-Carlo log expected improvement of a candidate together with the running trials,
in numpy, with its derivative written out (the part of `FastLogExpectedImprovement` that
runs when trials are pending)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.special
from botorch.acquisition.logei import TAU_MAX, TAU_RELU

from tunewire.server.algorithms.gp.model import kernel_of_distance, kernel_slope
from tunewire.server.algorithms.gp.numerics import JITTER, cholesky

# Quasi-random draws of the joint posterior per candidate.
MC_SAMPLES = 128


class JointLogImprovement:
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
    (over a short last axis numpy reduces element by element).
    """

    def __init__(
        self,
        acq: Any,
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
        self.rest = np.sqrt(np.maximum(self.given, JITTER)) if k == 1 else cholesky(self.given)
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
