"""The default algorithm: Bayesian optimisation with Gaussian processes.

A pure function of (spec, history, pending, seed): scrambled Sobol points until the study
has enough trials, then a GP fit (model.py) and log expected improvement (acquisition.py)
— analytic for one candidate, Monte-Carlo jointly with the running trials, BoTorch's
qLogNoisyExpectedImprovement for a batch asked at once and
qLogNoisyExpectedHypervolumeImprovement for several metrics — maximised over the mixed
search space (optimise.py).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from botorch.exceptions.errors import BotorchError
from botorch.models import SingleTaskGP
from linear_operator.utils.errors import NanError, NotPSDError

from tunewire.server.algorithms.base import SuggestRequest, derived_seed
from tunewire.server.algorithms.encoding import ModelEncoding
from tunewire.server.algorithms.gp.acquisition import acquisition_factory
from tunewire.server.algorithms.gp.model import (
    DTYPE,
    TrainingData,
    fit_objective_model,
    training_data,
)
from tunewire.server.algorithms.gp.optimise import optimise_batch
from tunewire.server.algorithms.gp.threads import single_threaded_blas
from tunewire.server.algorithms.random_search import SobolSearch
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.space import Params, SearchSpace
from tunewire.server.domain.study import StudySpec

logger = logging.getLogger(__name__)

# Model inputs a GP study may have (see GaussianProcessSearch.check_spec).
MAX_MODEL_COLUMNS = 1000


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


class GaussianProcessSearch:
    """Sobol initial design, then GP-based Bayesian optimisation (see the module doc).

    Trials that count toward the initial design: every finished, failed or infeasible
    trial (user-added ones included) plus the pending ones; LOST trials do not count and
    are not modelled. If anything in the fit or the acquisition fails numerically, the
    suggestion is the study's next Sobol point and a warning is logged: a worker never
    sees an error from the optimiser.
    """

    uses_history = True
    # A jointly optimised batch costs more CPU per suggestion than single suggestions with
    # the others pending, and nobody gets an answer until the whole batch is done:
    # concurrent workers are answered one at a time.
    combine_asks = False
    uses_curves = False

    def check_spec(self, spec: StudySpec) -> None:
        """At most MAX_MODEL_COLUMNS model inputs: one per numeric parameter, one per value
        of a categorical one (the candidates the acquisition scores are that wide)."""
        columns = ModelEncoding(spec.space).dim
        if columns > MAX_MODEL_COLUMNS:
            raise InvalidArgument(
                f"the GP's inputs would be {columns:,} columns (one per numeric parameter, "
                f"one per categorical value); it takes at most {MAX_MODEL_COLUMNS:,}. Use "
                "random or sobol for this space, or fewer categorical values"
            )

    def suggest(self, request: SuggestRequest) -> list[Params]:
        if request.count <= 0:
            return []
        if not _ready_for_model(request):
            return SobolSearch().suggest(request)
        try:
            return self._suggest_with_model(request)
        except NUMERICAL_ERRORS as error:
            logger.warning(
                "GP suggestion failed numerically for trial index %d (%s: %s); "
                "falling back to the Sobol sequence",
                request.trial_index,
                type(error).__name__,
                error,
            )
            return SobolSearch().suggest(request)

    def _suggest_with_model(self, request: SuggestRequest) -> list[Params]:
        with single_threaded_blas():
            return suggest_with_gp(request)


def _ready_for_model(request: SuggestRequest) -> bool:
    """Whether the initial design is complete and there are results to fit."""
    spec = request.spec
    n_init = spec.initial_trials or default_initial_trials(spec.space)
    counted = [o for o in request.observations if o.state.finished]
    with_results = [o for o in counted if o.metrics is not None]
    return len(counted) + len(request.pending) >= n_init and len(with_results) >= 2


def model_seed(request: SuggestRequest) -> int:
    """The seed of a model-based suggestion (the fit's subsampling, the acquisition search)."""
    return derived_seed(request.spec.seed, request.trial_index, 0x6770)


def suggest_with_gp(request: SuggestRequest) -> list[Params]:
    """Fits the model(s) and maximises the acquisition; raises on numerical failure."""
    spec = request.spec
    encoding = ModelEncoding(spec.space)
    seed = model_seed(request)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        data = training_data(spec, encoding, request.observations, seed)
        if len(data.x) < 2:
            raise ValueError("fewer than two trials with results to fit")
        model, n_objectives = fit_models(data)
        pending = [encoding.encode(p) for p in request.pending]
        factory = acquisition_factory(model, data, n_objectives, seed)
        rng = np.random.default_rng(seed)
        points = optimise_batch(factory, encoding, data, pending, request.count, rng, seed)
    return [encoding.decode(row) for row in encoding.with_activity(points)]


def fit_models(data: TrainingData) -> tuple[SingleTaskGP, int]:
    """The objective model; failed and infeasible trials enter it at the worst value seen.

    That penalty, rather than a separate feasibility model, was chosen by benchmark (the
    "failed regions" comparison): a GP regression on pass/fail labels has
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
