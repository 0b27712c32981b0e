"""Best trials: the single best for one metric, the Pareto front for several.

The server answers ListOptimalTrials with `pareto_front`; the GP uses the same notion of
"better" (goals from the spec, only COMPLETED and STOPPED_EARLY trials with finite
values of every metric count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunewire.server.algorithms.base import Observation
from tunewire.server.algorithms.gp.model import metric_values
from tunewire.server.domain.study import Goal, StudySpec


def pareto_front(spec: StudySpec, observations: Sequence[Observation]) -> list[int]:
    """Trial ids of the non-dominated trials, in the order of `observations`.

    A trial is dominated when another is at least as good on every metric and strictly
    better on one. With one metric this is the best trial (all of them, on ties).
    Duplicated results (the same metric values twice) are all kept: neither dominates.

    Args:
        spec: the study spec (metric goals).
        observations: finished trials; those without usable results are ignored.

    Returns:
        The ids of the optimal trials; empty when no trial has results.

    Example:
        >>> pareto_front(spec, [obs_loss_1, obs_loss_2])   # minimise loss
        [obs_loss_1.trial_id]
    """
    ids, rows = [], []
    for obs in observations:
        values = metric_values(spec, obs)
        if values is None:
            continue
        ids.append(obs.trial_id)
        rows.append(np.where([m.goal is Goal.MINIMIZE for m in spec.metrics], -values, values))
    if not rows:
        return []
    y = np.array(rows)  # larger is better in every column
    keep = non_dominated(y)
    return [i for i, k in zip(ids, keep, strict=True) if k]


def non_dominated(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of y (n, m) not dominated by another row (maximisation)."""
    n = len(y)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        at_least = np.all(y >= y[i], axis=1)
        strictly = np.any(y > y[i], axis=1)
        if np.any(at_least & strictly):
            keep[i] = False
    return keep
