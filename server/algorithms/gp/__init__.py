"""Bayesian optimisation with Gaussian processes, split by concern: the policy (policy.py),
the model and its fit (model.py), the acquisition (acquisition.py, joint.py, numerics.py),
its maximisation over the mixed space (optimise.py) and BLAS thread limiting (threads.py)."""

from tunewire.server.algorithms.gp.policy import GaussianProcessSearch, default_initial_trials

__all__ = ["GaussianProcessSearch", "default_initial_trials"]
