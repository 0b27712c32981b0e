"""The algorithm interface the service calls inside a SuggestTrials request, and what
every algorithm shares: the request it gets and its seeding."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tunewire.server.domain.space import Params
from tunewire.server.domain.study import StudySpec, TrialState

# A trial's reports of the study's primary metric: (step, value), by step.
Curve = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Observation:
    """A finished trial as algorithms see it: its configuration, state and final metrics.

    `metrics` is None for INFEASIBLE and FAILED trials; STOPPED_EARLY trials carry the
    metrics they completed with (see docs on early stopping in the README). `curve` is
    filled only for an algorithm that `uses_curves`."""

    trial_id: int
    params: Params
    state: TrialState
    metrics: Mapping[str, float] | None
    curve: Curve = ()


@dataclass(frozen=True)
class SuggestRequest:
    """Everything an algorithm may use. Suggestions must depend on nothing else."""

    spec: StudySpec
    observations: Sequence[Observation]
    pending: Sequence[Params]  # ACTIVE and REQUESTED trials' configurations
    count: int
    trial_index: int  # trials the study has created so far; seeds sequence-based algorithms
    # The pending trials' reports so far, in the order of `pending` (only for an algorithm
    # that `uses_curves`; empty otherwise).
    pending_curves: Sequence[Curve] = ()


class Algorithm(Protocol):
    """Proposes up to `request.count` valid configurations.

    Returning fewer than asked means the algorithm has nothing more to offer (e.g. a
    finished grid); the study then completes once its running trials finish.

    Attributes:
        uses_history: False lets the service skip loading the study's trials (random and
            Sobol search only need `trial_index`), which keeps large studies cheap.
        combine_asks: False keeps the service from answering several workers'
            concurrent requests with one call of `count` suggestions: for an algorithm
            whose batch costs more than as many single suggestions (a jointly optimised
            GP batch).
        uses_curves: True makes the service load every trial's reports of the primary
            metric (`Observation.curve`, `SuggestRequest.pending_curves`).
    """

    @property
    def uses_history(self) -> bool: ...

    @property
    def uses_curves(self) -> bool: ...

    @property
    def combine_asks(self) -> bool: ...

    def check_spec(self, spec: StudySpec) -> None:
        """Refuses (InvalidArgument) a study this algorithm cannot serve within the API's
        limits; called before the study is stored."""

    def suggest(self, request: SuggestRequest) -> list[Params]: ...


def derived_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from the study seed and counters: stable across processes."""
    text = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def rng_for(request: SuggestRequest) -> np.random.Generator:
    return np.random.default_rng(derived_seed(request.spec.seed, request.trial_index))
