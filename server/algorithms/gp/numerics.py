"""Small numeric kernels the acquisition shares: the kernel between point sets, triangular
solves, a Cholesky factor that tolerates rounding, and BoTorch's stable log h(u)."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.special

from tunewire.server.algorithms.gp.model import kernel_of_distance

# Added to the variances of the joint posterior of a candidate and the running trials.
JITTER = 1e-8


def kernel(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    diff = z1[:, None, :] - z2[None, :, :]
    return kernel_of_distance(np.einsum("abd,abd->ab", diff, diff))


def lower_solve(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(chol, b, lower=True, check_finite=False)


def upper_solve(chol_t: np.ndarray, b: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(chol_t, b, lower=False, check_finite=False)


def cholesky(a: np.ndarray) -> np.ndarray:
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


def log_h(u: np.ndarray) -> np.ndarray:
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
