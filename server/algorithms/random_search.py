"""Random and scrambled-Sobol search over the unit cube, decoded to valid configurations."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

from tunewire.server.algorithms.base import SuggestRequest, derived_seed, rng_for
from tunewire.server.algorithms.encoding import decode_unit
from tunewire.server.domain.space import Params
from tunewire.server.domain.study import StudySpec


class RandomSearch:
    """Independent uniform draws in the unit cube (log scales are uniform in the log)."""

    uses_history = False
    combine_asks = True
    uses_curves = False

    def check_spec(self, spec: StudySpec) -> None:
        """Any valid space."""

    def suggest(self, request: SuggestRequest) -> list[Params]:
        rng = rng_for(request)
        d = len(request.spec.space)
        return [decode_unit(request.spec.space, rng.random(d)) for _ in range(request.count)]


def sobol_points(d: int, seed: int, start: int, count: int) -> np.ndarray:
    """Points start..start+count-1 of the scrambled Sobol sequence of this seed."""
    engine = qmc.Sobol(d=d, scramble=True, seed=derived_seed(seed, 0x50B01))
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        # Balance warnings for counts that are not powers of two do not apply to a
        # sequence consumed a few points at a time.
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(count)


class SobolSearch:
    """The scrambled Sobol sequence: point i goes to the study's i-th created trial."""

    uses_history = False
    combine_asks = True
    uses_curves = False

    def check_spec(self, spec: StudySpec) -> None:
        """Any valid space."""

    def suggest(self, request: SuggestRequest) -> list[Params]:
        space = request.spec.space
        points = sobol_points(len(space), request.spec.seed, request.trial_index, request.count)
        return [decode_unit(space, p) for p in points]
