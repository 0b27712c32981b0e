"""Maximising an acquisition over the mixed search space: raw scoring of Sobol points and
perturbed incumbents, then alternating L-BFGS-B on the continuous columns with exhaustive
moves on integer, discrete and categorical ones, so that every scored candidate is a valid
configuration (rounding happens inside the optimisation, not after it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.utils.multi_objective.pareto import is_non_dominated
from scipy.optimize import minimize

from tunewire.server.algorithms.encoding import ModelEncoding, encode_every_parameter
from tunewire.server.algorithms.gp.acquisition import EVAL_CHUNK, FastLogExpectedImprovement
from tunewire.server.algorithms.gp.model import DTYPE, TrainingData
from tunewire.server.algorithms.random_search import sobol_points

# The search's budget, set for latency; larger budgets were not measured to help.
RAW_SAMPLES = 512
# Share of the raw samples drawn around the best trials rather than from Sobol: the
# optimum of EI is usually near the incumbent once the model is confident.
LOCAL_SAMPLE_SHARE = 0.25
NUM_RESTARTS = 6
LBFGS_MAX_ITERATIONS = 60
LOCAL_SEARCH_ROUNDS = 4
# Encoded-space distance (max over columns) under which two candidates count as the same.
DUPLICATE_TOLERANCE = 3e-4


# Candidates x model inputs one call may optimise: a call's work grows with both, and a
# worker asking for many trials of a wide study gets the first ones and asks again.
MAX_BATCH_INPUTS = 10_000


def batch_limit(columns: int) -> int:
    """How many candidates one call gives for a model of `columns` inputs (at least 1)."""
    return max(1, MAX_BATCH_INPUTS // max(1, columns))


def optimise_batch(
    factory: Callable[[np.ndarray, int], AcquisitionFunction],
    encoding: ModelEncoding,
    data: TrainingData,
    pending: Sequence[np.ndarray],
    count: int,
    rng: np.random.Generator,
    seed: int,
) -> np.ndarray:
    """`count` candidates (at most `batch_limit` of them): greedy one at a time (each
    seeing the previous as pending), then, for several, a joint local refinement of the
    whole batch under the q-batch acquisition, which can only raise the batch's joint
    value."""
    count = min(count, batch_limit(encoding.dim))
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
