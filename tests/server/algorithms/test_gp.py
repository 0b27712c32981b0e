"""The GP algorithm called directly, as the service calls it: validity, pending points,
reproducibility, goals, multi-objective, failures, fallback, and that it beats random."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from botorch.test_functions import Branin, Hartmann
from linear_operator.utils.errors import NotPSDError

from tunewire.server.algorithms.base import Observation, SuggestRequest
from tunewire.server.algorithms.encoding import decode_unit
from tunewire.server.algorithms.gp import GaussianProcessSearch, default_initial_trials
from tunewire.server.algorithms.gp import model as gp_model
from tunewire.server.algorithms.pareto import pareto_front
from tunewire.server.algorithms.random_search import RandomSearch, SobolSearch
from tunewire.server.domain.space import Params
from tunewire.server.domain.study import StudySpec, TrialState

torch.set_num_threads(1)

BRANIN = Branin()
HARTMANN6 = Hartmann(dim=6)

BRANIN_PARAMS = [
    {"name": "x1", "type": "float", "min": -5, "max": 10},
    {"name": "x2", "type": "float", "min": 0, "max": 15},
]
HARTMANN_PARAMS = [{"name": f"x{i}", "type": "float", "min": 0, "max": 1} for i in range(6)]
CONDITIONAL_PARAMS = [
    {"name": "lr", "type": "float", "min": 1e-5, "max": 1e-1, "scale": "log"},
    {"name": "layers", "type": "int", "min": 0, "max": 3},
    {
        "name": "width1",
        "type": "int",
        "min": 16,
        "max": 512,
        "scale": "log",
        "condition": {"parent": "layers", "min": 1},
    },
    {
        "name": "width2",
        "type": "int",
        "min": 16,
        "max": 512,
        "scale": "log",
        "condition": {"parent": "layers", "min": 2},
    },
    {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam"]},
    {
        "name": "momentum",
        "type": "float",
        "min": 0.0,
        "max": 0.99,
        "condition": {"parent": "optimizer", "values": ["sgd"]},
    },
    {"name": "batch", "type": "discrete", "values": [32, 64, 128]},
]


def _torch_kernel(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The model's kernel in torch, for references differentiated by autograd."""
    return gp_model.kernel_of_distance(torch.cdist(z1, z2).pow(2))


def branin(p: Params) -> float:
    return float(BRANIN(torch.tensor([[p["x1"], p["x2"]]])))


def hartmann6(p: Params) -> float:
    return float(HARTMANN6(torch.tensor([[p[f"x{i}"] for i in range(6)]])))


def conditional(p: Params) -> float:
    """A network-shaped loss: best at lr 1e-3, 2 layers of 128 and 64, adam."""
    loss = (np.log10(p["lr"]) + 3) ** 2 + [1.0, 0.5, 0.0, 0.2][p["layers"]]
    for i, target in ((1, 128), (2, 64)):
        if f"width{i}" in p:
            loss += 0.1 * (np.log2(p[f"width{i}"]) - np.log2(target)) ** 2
    loss += 0.3 if p["optimizer"] == "sgd" else 0.0
    return float(loss)


def spec_of(
    params: list[dict], seed: int = 0, goals: tuple[str, ...] = ("minimize",), initial: int = 0
) -> StudySpec:
    return StudySpec.from_dict(
        {
            "parameters": params,
            "metrics": [{"name": f"m{i}", "goal": g} for i, g in enumerate(goals)],
            "algorithm": "gp",
            "seed": seed,
            "initial_trials": initial,
        }
    )


def history(spec: StudySpec, f, n: int, seed: int = 1) -> list[Observation]:
    """n completed trials at uniform random configurations."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = decode_unit(spec.space, rng.random(len(spec.space)))
        out.append(Observation(i, p, TrialState.COMPLETED, {"m0": f(p)}))
    return out


def request(
    spec: StudySpec, obs: list[Observation], pending: list[Params] | None = None, count: int = 1
) -> SuggestRequest:
    return SuggestRequest(spec, obs, pending or [], count, len(obs) + len(pending or []))


def minimise(spec: StudySpec, f, budget: int, algorithm) -> float:
    """Best value after `budget` sequential suggestions of `algorithm`."""
    obs: list[Observation] = []
    for i in range(budget):
        p = algorithm.suggest(request(spec, obs))[0]
        obs.append(Observation(i, p, TrialState.COMPLETED, {"m0": f(p)}))
    return min(o.metrics["m0"] for o in obs)


def test_suggestions_are_valid_in_a_conditional_space() -> None:
    spec = spec_of(CONDITIONAL_PARAMS)
    obs = history(spec, conditional, 12)
    out = GaussianProcessSearch().suggest(request(spec, obs, count=3))
    assert len(out) == 3
    for p in out:
        assert spec.space.validate(p) == p
    # The model learnt something: the suggestions use adam and a sensible learning rate.
    assert any(p["optimizer"] == "adam" for p in out)


def test_pending_points_give_distinct_suggestions() -> None:
    spec = spec_of(BRANIN_PARAMS)
    obs = history(spec, branin, 10)
    gp = GaussianProcessSearch()
    first = gp.suggest(request(spec, obs))[0]
    second = gp.suggest(request(spec, obs, pending=[first]))[0]
    assert second != first
    batch = gp.suggest(request(spec, obs, count=3))
    coords = np.array([[p["x1"], p["x2"]] for p in batch])
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    assert distances[np.triu_indices(3, 1)].min() > 1e-3


def test_same_seed_and_history_give_the_same_suggestion() -> None:
    spec = spec_of(HARTMANN_PARAMS, seed=7)
    obs = history(spec, hartmann6, 12)
    a = GaussianProcessSearch().suggest(request(spec, obs, count=2))
    b = GaussianProcessSearch().suggest(request(spec, obs, count=2))
    assert a == b


def test_maximising_a_metric_equals_minimising_its_negative() -> None:
    obs_min = history(spec_of(BRANIN_PARAMS), branin, 10)
    obs_max = [
        Observation(o.trial_id, o.params, o.state, {"m0": -o.metrics["m0"]}) for o in obs_min
    ]
    a = GaussianProcessSearch().suggest(request(spec_of(BRANIN_PARAMS), obs_min))
    b = GaussianProcessSearch().suggest(
        request(spec_of(BRANIN_PARAMS, goals=("maximize",)), obs_max)
    )
    assert a == b


def test_initial_design_is_sobol_and_counts_user_trials() -> None:
    spec = spec_of(HARTMANN_PARAMS, initial=6)
    obs = history(spec, hartmann6, 3)
    req = request(spec, obs)
    assert GaussianProcessSearch().suggest(req) == SobolSearch().suggest(req)
    # Three results plus three pending (e.g. enqueued by the user) complete the design.
    pending = [o.params for o in history(spec, hartmann6, 3, seed=9)]
    req = request(spec, obs, pending=pending)
    assert GaussianProcessSearch().suggest(req) != SobolSearch().suggest(req)
    assert default_initial_trials(spec.space) == 8


@pytest.mark.parametrize(
    ("name", "params", "f", "optimum", "budget", "n_init"),
    [
        ("branin", BRANIN_PARAMS, branin, 0.397887, 30, 6),
        ("hartmann6", HARTMANN_PARAMS, hartmann6, -3.32237, 25, 8),
    ],
)
def test_gp_beats_random_search(name, params, f, optimum, budget, n_init) -> None:
    gp_regrets, random_regrets = [], []
    for seed in (0, 1):
        spec = spec_of(params, seed=seed, initial=n_init)
        gp_regrets.append(minimise(spec, f, budget, GaussianProcessSearch()) - optimum)
        random_regrets.append(minimise(spec, f, budget, RandomSearch()) - optimum)
    assert max(gp_regrets) < min(random_regrets), (name, gp_regrets, random_regrets)


def test_multi_objective_suggestions_and_pareto_front() -> None:
    spec = spec_of(HARTMANN_PARAMS[:2], goals=("minimize", "maximize"))
    rng = np.random.default_rng(0)
    obs = []
    for i in range(12):
        p = decode_unit(spec.space, rng.random(2))
        obs.append(
            Observation(
                i,
                p,
                TrialState.COMPLETED,
                {"m0": p["x0"] ** 2 + p["x1"], "m1": p["x0"] - p["x1"] ** 2},
            )
        )
    out = GaussianProcessSearch().suggest(request(spec, obs, count=2))
    assert len(out) == 2 and all(spec.space.validate(p) == p for p in out)
    front = set(pareto_front(spec, obs))
    values = {o.trial_id: (o.metrics["m0"], o.metrics["m1"]) for o in obs}
    for i in values:
        dominated = any(
            values[j][0] <= values[i][0] and values[j][1] >= values[i][1] and values[j] != values[i]
            for j in values
        )
        assert (i not in front) == dominated


def test_pareto_front_ignores_trials_without_results() -> None:
    spec = spec_of(HARTMANN_PARAMS[:1], goals=("minimize", "minimize"))
    p: Params = {"x0": 0.5}
    obs = [
        Observation(1, p, TrialState.COMPLETED, {"m0": 1.0, "m1": 2.0}),
        Observation(2, p, TrialState.COMPLETED, {"m0": 2.0, "m1": 1.0}),
        Observation(3, p, TrialState.STOPPED_EARLY, {"m0": 2.0, "m1": 2.0}),
        Observation(4, p, TrialState.FAILED, None),
        Observation(5, p, TrialState.COMPLETED, {"m0": 0.5, "m1": float("nan")}),
    ]
    assert pareto_front(spec, obs) == [1, 2]
    # One metric: trial 5's missing second metric does not matter and its 0.5 is best.
    assert pareto_front(spec_of(HARTMANN_PARAMS[:1]), obs) == [5]


def test_failed_region_is_avoided() -> None:
    """Trials with x0 > 0.5 fail; the optimum of the results sits just below that edge."""
    spec = spec_of(HARTMANN_PARAMS[:2])
    rng = np.random.default_rng(3)
    obs = []
    for i in range(20):
        p = decode_unit(spec.space, rng.random(2))
        if p["x0"] > 0.5:
            obs.append(Observation(i, p, TrialState.FAILED, None))
        else:
            obs.append(Observation(i, p, TrialState.COMPLETED, {"m0": -p["x0"] + p["x1"] ** 2}))
    obs.append(Observation(99, {"x0": 0.3, "x1": 0.3}, TrialState.LOST, None))
    out = GaussianProcessSearch().suggest(request(spec, obs, count=3))
    assert sum(p["x0"] <= 0.55 for p in out) >= 2, out


def test_numerical_failure_falls_back_to_sobol(monkeypatch, caplog) -> None:
    spec = spec_of(BRANIN_PARAMS)
    obs = history(spec, branin, 10)
    req = request(spec, obs)

    def broken(*_args, **_kwargs):
        raise NotPSDError("simulated")

    monkeypatch.setattr(gp_model, "map_hyperparameters", broken)
    with caplog.at_level(logging.WARNING):
        out = GaussianProcessSearch().suggest(req)
    assert out == SobolSearch().suggest(req)
    assert "falling back" in caplog.text


def test_degenerate_histories_do_not_raise() -> None:
    spec = spec_of(HARTMANN_PARAMS[:3])
    flat = [
        Observation(i, o.params, o.state, {"m0": 1.0})
        for i, o in enumerate(history(spec, lambda p: p["x0"], 10))
    ]
    same_point = [
        Observation(i, {"x0": 0.5, "x1": 0.5, "x2": 0.5}, TrialState.COMPLETED, {"m0": float(i)})
        for i in range(10)
    ]
    huge = [
        Observation(o.trial_id, o.params, o.state, {"m0": 1e300 * (o.trial_id % 2) + 1e-300})
        for o in flat
    ]
    all_failed = [Observation(o.trial_id, o.params, TrialState.FAILED, None) for o in flat]
    for obs in (flat, same_point, huge, all_failed):
        out = GaussianProcessSearch().suggest(request(spec, obs, count=2))
        assert len(out) == 2 and all(spec.space.validate(p) == p for p in out)


@pytest.mark.parametrize("kernel", ["matern", "rbf"])
def test_fit_objective_has_autograd_values_and_gradients(monkeypatch, kernel: str) -> None:
    """The fit's written-out gradient equals autograd's through the plain formula: the
    log marginal likelihood from a Cholesky factor plus the log-normal lengthscale prior
    and the Gamma noise prior, per point."""
    monkeypatch.setattr(gp_model, "KERNEL", kernel)
    torch.manual_seed(0)
    x = torch.rand(30, 6, dtype=torch.float64)
    y = torch.sin(4 * x).sum(-1)
    y = (y - y.mean()) / y.std()
    n, d = x.shape
    objective = gp_model.map_objective(x.numpy(), y.numpy())
    loc, scale = math.sqrt(2.0) + 0.5 * math.log(d), math.sqrt(3.0)

    def reference(theta: torch.Tensor) -> torch.Tensor:
        log_ls, log_noise, constant = theta[:d], theta[d], theta[d + 1]
        k = _torch_kernel(x / torch.exp(log_ls), x / torch.exp(log_ls))
        chol = torch.linalg.cholesky(k + torch.exp(log_noise) * torch.eye(n, dtype=x.dtype))
        r = (y - constant).unsqueeze(-1)
        log_lik = (
            -0.5 * (r * torch.cholesky_solve(r, chol)).sum()
            - torch.log(torch.diagonal(chol)).sum()
            - 0.5 * n * math.log(2 * math.pi)
        )
        log_prior = (
            (-log_ls - 0.5 * ((log_ls - loc) / scale) ** 2).sum()
            + (gp_model.NOISE_PRIOR_CONCENTRATION - 1) * log_noise
            - gp_model.NOISE_PRIOR_RATE * torch.exp(log_noise)
        )
        return -(log_lik + log_prior) / n

    rng = np.random.default_rng(0)
    for _ in range(5):
        theta = np.concatenate([rng.uniform(-2, 1, d), [rng.uniform(-12, -1)], [rng.normal()]])
        value, grad = objective(theta)
        t = torch.tensor(theta, requires_grad=True)
        expected = reference(t)
        (expected_grad,) = torch.autograd.grad(expected, t)
        assert value == pytest.approx(float(expected), rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(grad, expected_grad.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kernel", ["matern", "rbf"])
def test_fast_log_ei_equals_botorch_log_ei(monkeypatch, kernel: str) -> None:
    """The analytic acquisition of sequential suggestions is BoTorch's LogEI (best_f = the
    best posterior mean at the trials) up to the constant log of the outcome scale, with
    the same gradients."""
    from botorch.acquisition.analytic import LogExpectedImprovement

    from tunewire.server.algorithms.gp.acquisition import FastLogExpectedImprovement

    monkeypatch.setattr(gp_model, "KERNEL", kernel)
    torch.manual_seed(0)
    x = torch.rand(25, 6, dtype=torch.float64)
    y = 3 * torch.sin(4 * x).sum(-1, keepdim=True)
    model = gp_model.fit_objective_model(x, y)
    fast = FastLogExpectedImprovement(model, x[:20])
    best_f = model.posterior(x[:20]).mean.max()
    reference = LogExpectedImprovement(model, best_f=best_f)
    candidates = torch.cat([torch.rand(200, 1, 6, dtype=torch.float64), x[:3, None]])
    a = candidates.clone().requires_grad_(True)
    b = candidates.clone().requires_grad_(True)
    value_a, value_b = fast(a), reference(b)
    offset = float(model.outcome_transform.stdvs.log())
    assert torch.allclose(value_a + offset, value_b, atol=1e-5, rtol=1e-6)
    (grad_a,) = torch.autograd.grad(value_a.sum(), a)
    (grad_b,) = torch.autograd.grad(value_b.sum(), b)
    assert torch.allclose(grad_a, grad_b, atol=1e-4, rtol=1e-4)


def test_fast_log_ei_with_pending_is_the_joint_expected_improvement(monkeypatch) -> None:
    """With running trials the fast acquisition is log E[max(f(x), f(pending)) - best]+,
    checked against a brute-force Monte-Carlo estimate from GPyTorch's joint posterior."""
    from tunewire.server.algorithms.gp import acquisition

    monkeypatch.setattr(acquisition, "MC_SAMPLES", 4096)
    torch.manual_seed(0)
    x = torch.rand(25, 6, dtype=torch.float64)
    model = gp_model.fit_objective_model(x, 3 * torch.sin(4 * x).sum(-1, keepdim=True))
    pending = torch.rand(3, 6, dtype=torch.float64)
    fast = acquisition.FastLogExpectedImprovement(model, x, pending, seed=1)
    best_f = model.posterior(x).mean.max()
    best = x[model.posterior(x).mean.argmax()]
    offset = float(model.outcome_transform.stdvs.log())
    for candidate in (best + 0.03, best - 0.05):
        posterior = model.posterior(torch.cat([candidate[None], pending]))
        joint = torch.distributions.MultivariateNormal(
            posterior.mean.detach().squeeze(-1), posterior.mvn.covariance_matrix.detach()
        )
        samples = joint.sample(torch.Size([400_000]))
        expected = torch.log((samples.max(-1).values - best_f.detach()).clamp_min(0).mean())
        value = fast(candidate[None, None]).detach() + offset
        assert abs(float(value) - float(expected)) < 0.3, (float(value), float(expected))
    # Where improvement is rare the Monte-Carlo estimate is floored by the candidate's own
    # analytic value, which the joint improvement can never be below.
    alone = acquisition.FastLogExpectedImprovement(model, x)
    candidates = torch.rand(50, 1, 6, dtype=torch.float64)
    assert torch.all(fast(candidates) >= alone(candidates) - 1e-9)


@pytest.mark.parametrize("kernel", ["matern", "rbf"])
@pytest.mark.parametrize("running", [1, 3])
def test_fast_log_ei_with_pending_has_autograd_values_and_gradients(
    monkeypatch, kernel: str, running: int
) -> None:
    """The pending path's written-out derivative equals autograd's through the plain
    formula: the joint posterior's Cholesky factor, then BoTorch's log_fatplus, fatmax and
    logmeanexp on the samples (the formula the fast path replaced)."""
    from botorch.acquisition.logei import TAU_MAX, TAU_RELU
    from botorch.utils.safe_math import fatmax, log_fatplus, logmeanexp

    from tunewire.server.algorithms.gp import acquisition, numerics

    monkeypatch.setattr(gp_model, "KERNEL", kernel)
    torch.manual_seed(0)
    x = torch.rand(25, 6, dtype=torch.float64)
    model = gp_model.fit_objective_model(x, 3 * torch.sin(4 * x).sum(-1, keepdim=True))
    best = x[model.posterior(x).mean.argmax()]
    # A running trial near the incumbent makes the joint term count there.
    pending = torch.rand(running, 6, dtype=torch.float64)
    pending[0] = (best + 0.05 * torch.randn(6, dtype=torch.float64)).clamp(0, 1)
    fast = acquisition.FastLogExpectedImprovement(model, x, pending, seed=1)
    alone = acquisition.FastLogExpectedImprovement(model, x)
    # Near the incumbent, near a running trial, and anywhere.
    candidates = torch.cat(
        [
            best + 0.03 * torch.randn(40, 6, dtype=torch.float64),
            pending[:1] + 0.01 * torch.randn(10, 6, dtype=torch.float64),
            torch.rand(40, 6, dtype=torch.float64),
        ]
    ).clamp(0, 1)[:, None, :]

    def reference(points: torch.Tensor) -> torch.Tensor:
        # The fitted constants, from the acquisition's numpy arrays.
        lengthscale, train_z, chol, alpha, base_samples = (
            torch.from_numpy(a)
            for a in (fast._lengthscale, fast._z, fast._chol, fast._alpha, fast._base_samples)
        )
        both = torch.cat(
            [points[:, 0, None, :].expand(-1, 1, -1), pending.expand(len(points), -1, -1)], 1
        )
        z = both / lengthscale  # (b, 1 + k, D)
        k_star = _torch_kernel(z.reshape(-1, 6), train_z).reshape(len(points), running + 1, -1)
        mean = fast._constant + k_star @ alpha  # (b, 1 + k)
        v = torch.linalg.solve_triangular(chol, k_star.transpose(-1, -2), upper=False)
        prior = torch.stack([_torch_kernel(zi, zi) for zi in z])
        covariance = (
            prior
            - v.transpose(-1, -2) @ v
            + numerics.JITTER * torch.eye(running + 1, dtype=x.dtype)
        )
        chol = torch.linalg.cholesky(covariance)
        samples = mean[:, None, :] + base_samples @ chol.transpose(-1, -2)
        log_improvement = log_fatplus(samples - fast._best_f, tau=TAU_RELU)
        joint = logmeanexp(fatmax(log_improvement, dim=-1, tau=TAU_MAX), dim=-1)
        return torch.maximum(joint, alone(points))

    a = candidates.clone().requires_grad_(True)
    b = candidates.clone().requires_grad_(True)
    value_a, value_b = fast(a), reference(b)
    assert torch.allclose(value_a, value_b, atol=1e-9, rtol=1e-9)
    assert (value_a > alone(candidates) + 1e-3).sum() >= 20  # the joint term is exercised
    (grad_a,) = torch.autograd.grad(value_a.sum(), a)
    (grad_b,) = torch.autograd.grad(value_b.sum(), b)
    assert torch.allclose(grad_a, grad_b, atol=1e-7, rtol=1e-6)


def test_pending_block_factor_survives_a_covariance_rounded_below_zero() -> None:
    """The factor of the running trials' covariance given a candidate: a matrix that
    rounding left a hair short of positive definite (two running trials at one point) is
    shifted up to the jitter instead of failing the whole batch of candidates."""
    from tunewire.server.algorithms.gp import numerics

    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    short = np.array([[1.0, 1.0], [1.0, 1.0 - 1e-12]])  # smallest eigenvalue about -5e-13
    factors = numerics.cholesky(np.stack([good, short]))
    assert np.isfinite(factors).all()
    np.testing.assert_allclose(factors[0] @ factors[0].T, good, rtol=1e-12)
    np.testing.assert_allclose(factors[1] @ factors[1].T, short, atol=1e-7)
    assert np.linalg.eigvalsh(factors[1] @ factors[1].T)[0] >= numerics.JITTER * 0.99


@pytest.mark.parametrize("running", [1, 3])
def test_fast_log_ei_scores_many_candidates_in_chunks_with_the_same_values(running: int) -> None:
    """Scoring hundreds of candidates with running trials goes in chunks (small arrays,
    no fresh pages per call); the values are those of one call per candidate."""
    from tunewire.server.algorithms.gp import acquisition, optimise

    torch.manual_seed(0)
    x = torch.rand(25, 6, dtype=torch.float64)
    model = gp_model.fit_objective_model(x, 3 * torch.sin(4 * x).sum(-1, keepdim=True))
    fast = acquisition.FastLogExpectedImprovement(
        model, x, torch.rand(running, 6, dtype=torch.float64)
    )
    candidates = np.random.default_rng(0).random((300, 6))
    assert fast.chunk < len(candidates)
    chunked = optimise._values(fast, candidates[:, None, :])
    one_by_one = [fast.values_and_gradients(c[None], gradients=True)[0][0] for c in candidates]
    np.testing.assert_allclose(chunked, one_by_one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["matern", "rbf"])
def test_many_running_trials_are_believed_with_autograd_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    """Beyond MAX_JOINT_PENDING running trials the candidate's log EI is analytic on the
    model conditioned on the running trials at their posterior mean (a believer): the
    mean stays, the variance shrinks. The written-out derivative equals autograd's through
    the plain formula (the conditioned covariance, BoTorch's stable log h)."""
    from botorch.acquisition.analytic import _log_ei_helper

    from tunewire.server.algorithms.gp import acquisition, numerics

    monkeypatch.setattr(gp_model, "KERNEL", kernel)
    torch.manual_seed(0)
    running = acquisition.MAX_JOINT_PENDING + 8
    x = torch.rand(30, 6, dtype=torch.float64)
    model = gp_model.fit_objective_model(x, 3 * torch.sin(4 * x).sum(-1, keepdim=True))
    pending = torch.rand(running, 6, dtype=torch.float64)
    fast = acquisition.FastLogExpectedImprovement(model, x, pending, seed=1)
    assert fast._believer is not None
    candidates = torch.cat(
        [pending[:5] + 0.02 * torch.randn(5, 6, dtype=torch.float64), torch.rand(60, 6)]
    ).clamp(0, 1)[:, None, :]
    noise = float(model.likelihood.noise.detach().reshape(-1)[0])

    def reference(points: torch.Tensor) -> torch.Tensor:
        lengthscale = torch.from_numpy(fast._lengthscale)
        train = x / lengthscale
        held = pending / lengthscale
        both = torch.cat([train, held])
        k_both = _torch_kernel(both, both)
        k_both = k_both + torch.diag(
            torch.cat([torch.full((len(x),), noise), torch.full((running,), numerics.JITTER)])
        )
        z = points[:, 0, :] / lengthscale
        k_star = _torch_kernel(z, train)
        mean = fast._constant + k_star @ torch.from_numpy(fast._alpha)
        k_aug = _torch_kernel(z, both)
        solved = torch.linalg.solve(k_both, k_aug.T)
        prior = gp_model.kernel_of_distance(torch.zeros(()))
        variance = prior - (k_aug * solved.T).sum(-1)
        sigma = variance.clamp_min(1e-12).sqrt()
        return _log_ei_helper((mean - fast._best_f) / sigma) + sigma.log()

    a = candidates.clone().requires_grad_(True)
    b = candidates.clone().requires_grad_(True)
    value_a, value_b = fast(a), reference(b)
    assert torch.allclose(value_a, value_b, atol=1e-7, rtol=1e-7)
    (grad_a,) = torch.autograd.grad(value_a.sum(), a)
    (grad_b,) = torch.autograd.grad(value_b.sum(), b)
    assert torch.allclose(grad_a, grad_b, atol=1e-5, rtol=1e-5)
    # Near a running trial the believer leaves little to gain.
    alone = acquisition.FastLogExpectedImprovement(model, x)
    assert (fast(candidates[:5]) < alone(candidates[:5]) - 1.0).all()
