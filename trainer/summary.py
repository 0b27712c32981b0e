"""What a worker did: how each of its trials ended, its exit code, and how both print."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunewire.trainer.reporter import Metrics

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


@dataclass
class TrialOutcome:
    """How one trial ended on this worker."""

    trial_id: int
    state: str  # completed, stopped_early, infeasible, failed, released, lost
    params: dict[str, Any]
    metrics: Metrics | None = None
    reason: str = ""
    seconds: float = 0.0


@dataclass
class WorkerSummary:
    """What a worker did; printed at the end and sent from worker processes to the CLI."""

    worker_id: str
    device: str
    objective: str = "val_loss"
    maximize: bool = False
    outcomes: list[TrialOutcome] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int = EXIT_OK
    message: str = ""

    def counts(self) -> Counter[str]:
        return Counter(o.state for o in self.outcomes)

    def best(self) -> TrialOutcome | None:
        """The finished trial with the best objective on this worker."""
        results = [
            o
            for o in self.outcomes
            if o.state in ("completed", "stopped_early")
            and o.metrics
            and self.objective in o.metrics
        ]
        pick = max if self.maximize else min
        return pick(results, key=lambda o: o.metrics[self.objective]) if results else None  # type: ignore[index]


def format_params(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def format_metrics(metrics: Mapping[str, float], names: tuple[str, ...] = ()) -> str:
    chosen = [n for n in dict.fromkeys(names) if n in metrics] or list(metrics)
    return ", ".join(f"{n} {metrics[n]:.4g}" for n in chosen)


KEY_METRICS = ("val_loss", "test_accuracy", "test_rmse", "epochs_trained", "train_seconds")
