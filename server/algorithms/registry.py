"""The algorithms by name (the names `StudySpec` accepts)."""

from __future__ import annotations

from collections.abc import Callable

from tunewire.server.algorithms.base import Algorithm
from tunewire.server.algorithms.grid import GridSearch
from tunewire.server.algorithms.random_search import RandomSearch, SobolSearch


def _gaussian_process() -> Algorithm:
    # Imported on first use: torch and BoTorch take seconds to import.
    from tunewire.server.algorithms.gp import GaussianProcessSearch

    return GaussianProcessSearch()


def _multi_fidelity_gaussian_process() -> Algorithm:
    from tunewire.server.algorithms.gp.fidelity import MultiFidelityGaussianProcessSearch

    return MultiFidelityGaussianProcessSearch()


_FACTORIES: dict[str, Callable[[], Algorithm]] = {
    "gp": _gaussian_process,
    "gp_mf": _multi_fidelity_gaussian_process,
    "random": RandomSearch,
    "sobol": SobolSearch,
    "grid": GridSearch,
}


def get_algorithm(name: str) -> Algorithm:
    """The algorithm of that name (validated by StudySpec)."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}") from None
