"""Suggestion algorithms. Each is a pure function of (spec, history, pending, seed)."""

from tunewire.server.algorithms.base import Algorithm, Observation, SuggestRequest
from tunewire.server.algorithms.registry import get_algorithm

__all__ = ["Algorithm", "Observation", "SuggestRequest", "get_algorithm"]
