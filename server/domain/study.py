"""Studies and trials as plain Python: the spec, the trial state machine's states, results."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tunewire.server.domain.early_stopping import (
    EarlyStoppingPolicy,
    StopDecision,
    validate_policy,
)
from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import (
    MAX_GRID_RESOLUTION,
    MAX_LEASE_SECONDS,
    MAX_METRICS,
    MAX_TRIAL_RETRIES,
    MAX_TRIALS,
    MIN_LEASE_SECONDS,
    check_count,
    check_keys,
    check_name,
    listed,
    shown,
)
from tunewire.server.domain.space import Params, SearchSpace

ALGORITHMS = ("gp", "gp_mf", "random", "sobol", "grid")
DEFAULT_ALGORITHM = "gp"
DEFAULT_LEASE_TIMEOUT_S = 600.0
DEFAULT_MAX_TRIAL_RETRIES = 2
DEFAULT_GRID_RESOLUTION = 5
MAX_SEED = 2**63 - 1
# The keys of a spec's dict form (YAML/JSON files, the stored form), of a metric, and the
# names an early-stopping mapping may give its rule under.
SPEC_KEYS = frozenset(
    {
        "parameters",
        "metrics",
        "algorithm",
        "seed",
        "early_stopping",
        "max_trials",
        "max_concurrent_trials",
        "lease_timeout_seconds",
        "max_trial_retries",
        "initial_trials",
        "grid_resolution",
    }
)
METRIC_KEYS = frozenset({"name", "goal"})
GOAL_ALIASES = {
    "min": "minimize",
    "max": "maximize",
    "minimise": "minimize",
    "maximise": "maximize",
}


class Goal(str, Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class StudyState(str, Enum):
    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


class TrialState(str, Enum):
    REQUESTED = "requested"
    ACTIVE = "active"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    INFEASIBLE = "infeasible"
    FAILED = "failed"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {TrialState.COMPLETED, TrialState.STOPPED_EARLY, TrialState.INFEASIBLE, TrialState.FAILED}
)
# States whose final metrics are results the optimiser and best-trial queries use.
RESULT_STATES = frozenset({TrialState.COMPLETED, TrialState.STOPPED_EARLY})


class TrialSource(str, Enum):
    ALGORITHM = "algorithm"
    USER = "user"
    RETRY = "retry"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    goal: Goal

    def better(self, a: float, b: float) -> bool:
        """True when value `a` is strictly better than `b` for this metric."""
        return a < b if self.goal is Goal.MINIMIZE else a > b


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study. Built through `StudySpec.create`, which validates."""

    space: SearchSpace
    metrics: tuple[MetricSpec, ...]
    algorithm: str = DEFAULT_ALGORITHM
    seed: int = 0
    early_stopping: EarlyStoppingPolicy = EarlyStoppingPolicy()
    max_trials: int = 0
    max_concurrent_trials: int = 0
    lease_timeout_seconds: float = DEFAULT_LEASE_TIMEOUT_S
    max_trial_retries: int = DEFAULT_MAX_TRIAL_RETRIES
    initial_trials: int = 0
    grid_resolution: int = DEFAULT_GRID_RESOLUTION

    @property
    def primary_metric(self) -> MetricSpec:
        return self.metrics[0]

    def lease_end(self, now: float) -> float:
        """When a lease taken or renewed at `now` (server clock, seconds) expires."""
        return now + self.lease_timeout_seconds

    @classmethod
    def create(
        cls,
        space: SearchSpace,
        metrics: Sequence[MetricSpec],
        *,
        algorithm: str = "",
        seed: int = 0,
        early_stopping: EarlyStoppingPolicy | None = None,
        max_trials: int = 0,
        max_concurrent_trials: int = 0,
        lease_timeout_seconds: float = 0.0,
        max_trial_retries: int | None = None,
        initial_trials: int = 0,
        grid_resolution: int = 0,
    ) -> StudySpec:
        """Validates and fills defaults. Raises InvalidArgument saying what to fix."""
        if not metrics:
            raise InvalidArgument("give at least one metric (name and goal)")
        if len(metrics) > MAX_METRICS:
            raise InvalidArgument(f"at most {MAX_METRICS} metrics")
        names = [m.name for m in metrics]
        for n in names:
            check_name("metric", n)
        if len(set(names)) != len(names):
            raise InvalidArgument(f"duplicate metric names in {listed(names)}")
        algorithm = (algorithm or DEFAULT_ALGORITHM).lower()
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(
                f"unknown algorithm {shown(algorithm)}; use one of {', '.join(ALGORITHMS)}"
            )
        check_count("seed", seed, MAX_SEED, low=-MAX_SEED)
        for what, value in (
            ("max_trials", max_trials),
            ("max_concurrent_trials", max_concurrent_trials),
            ("initial_trials", initial_trials),
        ):
            check_count(f"{what} (0 = no limit or the default)", value, MAX_TRIALS)
        if grid_resolution != 0:
            check_count(
                "grid_resolution (0 = the default)", grid_resolution, MAX_GRID_RESOLUTION, low=2
            )
        if lease_timeout_seconds != 0 and not (
            MIN_LEASE_SECONDS <= lease_timeout_seconds <= MAX_LEASE_SECONDS
        ):
            raise InvalidArgument(
                f"lease_timeout_seconds must be between {MIN_LEASE_SECONDS:g} and "
                f"{MAX_LEASE_SECONDS:g} (30 days), or 0 for the default "
                f"({DEFAULT_LEASE_TIMEOUT_S:g}); got {shown(lease_timeout_seconds)}"
            )
        if max_trial_retries is not None:
            check_count("max_trial_retries", max_trial_retries, MAX_TRIAL_RETRIES)
        return cls(
            space=space,
            metrics=tuple(metrics),
            algorithm=algorithm,
            seed=int(seed),
            early_stopping=validate_policy(early_stopping or EarlyStoppingPolicy()),
            max_trials=max_trials,
            max_concurrent_trials=max_concurrent_trials,
            lease_timeout_seconds=lease_timeout_seconds or DEFAULT_LEASE_TIMEOUT_S,
            max_trial_retries=(
                DEFAULT_MAX_TRIAL_RETRIES if max_trial_retries is None else max_trial_retries
            ),
            initial_trials=initial_trials,
            grid_resolution=grid_resolution or DEFAULT_GRID_RESOLUTION,
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: equal dicts mean equal studies (CreateStudy idempotence)."""
        return {
            "parameters": self.space.to_dicts(),
            "metrics": [{"name": m.name, "goal": m.goal.value} for m in self.metrics],
            "algorithm": self.algorithm,
            "seed": self.seed,
            "early_stopping": self.early_stopping.to_dict(),
            "max_trials": self.max_trials,
            "max_concurrent_trials": self.max_concurrent_trials,
            "lease_timeout_seconds": self.lease_timeout_seconds,
            "max_trial_retries": self.max_trial_retries,
            "initial_trials": self.initial_trials,
            "grid_resolution": self.grid_resolution,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StudySpec:
        """Builds (and validates) a spec from its dict form, as written by `to_dict` or a user.

        Every key is checked: a misspelt one is refused with the closest known key, not
        ignored.
        """
        if not isinstance(raw, Mapping):
            raise InvalidArgument("a study spec must be a mapping with parameters and metrics")
        check_keys("study spec", raw, SPEC_KEYS)
        raw_metrics = raw.get("metrics") or ()
        if isinstance(raw_metrics, (str, bytes, Mapping)) or not isinstance(raw_metrics, Sequence):
            raise InvalidArgument("metrics must be a list of {name, goal} mappings")
        metrics = [_metric_from_dict(m) for m in raw_metrics]
        es = raw.get("early_stopping") or {}
        if not isinstance(es, Mapping):
            raise InvalidArgument("early_stopping must be a mapping with a 'rule'")
        es = dict(es)
        rule = str(es.pop("rule", es.pop("type", "none")) or "none")
        max_step = es.pop("max_step", 0) or 0
        retries = raw.get("max_trial_retries")
        return cls.create(
            SearchSpace.from_dicts(raw.get("parameters") or ()),
            metrics,
            algorithm=_text(raw, "algorithm"),
            seed=_whole(raw, "seed"),
            early_stopping=EarlyStoppingPolicy(rule, es, max_step),
            max_trials=_whole(raw, "max_trials"),
            max_concurrent_trials=_whole(raw, "max_concurrent_trials"),
            lease_timeout_seconds=_real(raw, "lease_timeout_seconds"),
            max_trial_retries=None if retries is None else _whole(raw, "max_trial_retries"),
            initial_trials=_whole(raw, "initial_trials"),
            grid_resolution=_whole(raw, "grid_resolution"),
        )

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        return cls.from_dict(json.loads(text))


def _metric_from_dict(raw: Any) -> MetricSpec:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"a metric must be a mapping with name and goal, got {shown(raw)}")
    check_keys("metric", raw, METRIC_KEYS)
    name = raw.get("name", "")
    check_name("metric", name)
    goal_text = str(raw.get("goal", "")).lower()
    try:
        goal = Goal(GOAL_ALIASES.get(goal_text, goal_text))
    except ValueError:
        raise InvalidArgument(f"metric {name!r}: goal must be 'minimize' or 'maximize'") from None
    return MetricSpec(name, goal)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key) or ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string, got {shown(value)}")
    return value


def _whole(raw: Mapping[str, Any], key: str) -> int:
    """An integer setting (0 when absent); a fraction is refused, not truncated."""
    value = raw.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{key} must be a whole number, got {shown(value)}")
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        raise InvalidArgument(f"{key} must be a whole number, got {shown(value)}")
    return int(value)


def _real(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{key} must be a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgument(f"{key} {shown(value)} is out of range") from None


@dataclass(frozen=True)
class Measurement:
    step: int
    metrics: Mapping[str, float]
    elapsed_seconds: float = 0.0
    time: float = 0.0


@dataclass
class Trial:
    """A trial as the domain sees it (a row of the trials table and its measurements)."""

    study_name: str
    id: int
    parameters: Params
    state: TrialState
    source: TrialSource
    worker_id: str = ""
    final_metrics: Mapping[str, float] | None = None
    # The final measurement's step and elapsed seconds (None: not known).
    final_step: int | None = None
    final_elapsed_seconds: float | None = None
    reason: str = ""
    stop_decision: StopDecision | None = None
    retry_of: int = 0
    attempt: int = 0
    create_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    lease_expires: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    # The client's id of the AddTrial request that made it ("" for none).
    request_id: str = ""

    def evolve(self, **changes: Any) -> Trial:
        """A copy with `changes` (what `dataclasses.replace` does, without its per-field
        introspection: every report, heartbeat and suggestion makes a few of these)."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"Trial has no fields {sorted(unknown)}")
        copy = object.__new__(Trial)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


@dataclass(frozen=True)
class Study:
    """A study as listed: its spec is None when the stored one no longer validates (a
    study stored by an older, looser version); such a study can only be deleted."""

    name: str
    spec: StudySpec | None
    state: StudyState
    create_time: float
    trial_counts: Mapping[TrialState, int] = field(default_factory=dict)
    # The latest creation, start, report, heartbeat or end of one of its trials (0: none).
    update_time: float = 0.0
