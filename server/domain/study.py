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
from tunewire.server.domain.space import Params, SearchSpace, check_name

ALGORITHMS = ("gp", "random", "sobol", "grid")
DEFAULT_ALGORITHM = "gp"
DEFAULT_LEASE_TIMEOUT_S = 600.0
DEFAULT_MAX_TRIAL_RETRIES = 2
DEFAULT_GRID_RESOLUTION = 5
MAX_METRICS = 16


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
            raise InvalidArgument(f"duplicate metric names in {names}")
        algorithm = (algorithm or DEFAULT_ALGORITHM).lower()
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(
                f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
            )
        for what, value in (
            ("max_trials", max_trials),
            ("max_concurrent_trials", max_concurrent_trials),
            ("initial_trials", initial_trials),
            ("grid_resolution", grid_resolution),
        ):
            if value < 0:
                raise InvalidArgument(f"{what} must be >= 0 (0 = default), got {value}")
        if grid_resolution == 1:
            raise InvalidArgument("grid_resolution must be at least 2")
        if not math.isfinite(lease_timeout_seconds) or lease_timeout_seconds < 0:
            raise InvalidArgument(
                f"lease_timeout_seconds must be a positive number, got {lease_timeout_seconds}"
            )
        if max_trial_retries is not None and max_trial_retries < 0:
            raise InvalidArgument(f"max_trial_retries must be >= 0, got {max_trial_retries}")
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
        """Builds (and validates) a spec from its dict form, as written by `to_dict` or a user."""
        metrics = []
        for m in raw.get("metrics", ()) or ():
            goal_text = str(m.get("goal", "")).lower()
            goal_text = {"min": "minimize", "max": "maximize"}.get(goal_text, goal_text)
            goal_text = goal_text.replace("minimise", "minimize").replace("maximise", "maximize")
            try:
                goal = Goal(goal_text)
            except ValueError:
                raise InvalidArgument(
                    f"metric {m.get('name')!r}: goal must be 'minimize' or 'maximize'"
                ) from None
            metrics.append(MetricSpec(str(m.get("name", "")), goal))
        es = dict(raw.get("early_stopping") or {})
        rule = str(es.pop("rule", es.pop("type", "none")) or "none")
        return cls.create(
            SearchSpace.from_dicts(raw.get("parameters", ()) or ()),
            metrics,
            algorithm=str(raw.get("algorithm", "") or ""),
            seed=int(raw.get("seed", 0) or 0),
            early_stopping=EarlyStoppingPolicy(rule, es),
            max_trials=int(raw.get("max_trials", 0) or 0),
            max_concurrent_trials=int(raw.get("max_concurrent_trials", 0) or 0),
            lease_timeout_seconds=float(raw.get("lease_timeout_seconds", 0) or 0),
            max_trial_retries=(
                None if raw.get("max_trial_retries") is None else int(raw["max_trial_retries"])
            ),
            initial_trials=int(raw.get("initial_trials", 0) or 0),
            grid_resolution=int(raw.get("grid_resolution", 0) or 0),
        )

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        return cls.from_dict(json.loads(text))


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
    reason: str = ""
    stop_decision: StopDecision | None = None
    retry_of: int = 0
    attempt: int = 0
    create_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    lease_expires: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)

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
    name: str
    spec: StudySpec
    state: StudyState
    create_time: float
    trial_counts: Mapping[TrialState, int] = field(default_factory=dict)
