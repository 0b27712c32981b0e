"""The documented limits of the API and the checks that enforce them on every request,
before anything is read or written. README and docs/api.md list the same numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.space import check_name

MAX_SUGGEST_COUNT = 100
MAX_PAGE_SIZE = 1000
MAX_WORKER_ID_LENGTH = 256
MAX_REASON_LENGTH = 4096
MAX_METRICS_PER_REPORT = 256


def check_worker_id(worker_id: str) -> None:
    if not worker_id:
        raise InvalidArgument(
            "worker_id is required: give a stable id of the worker, e.g. host:gpu0"
        )
    if len(worker_id) > MAX_WORKER_ID_LENGTH:
        raise InvalidArgument(f"worker_id is longer than {MAX_WORKER_ID_LENGTH} characters")


def check_suggest_count(count: int) -> int:
    """The number of trials to hand out for `count` (0 means 1)."""
    if count < 0 or count > MAX_SUGGEST_COUNT:
        raise InvalidArgument(f"count must be between 1 and {MAX_SUGGEST_COUNT}, got {count}")
    return count or 1


def check_page_size(page_size: int) -> int:
    """The page size to use for `page_size` (0 means the largest)."""
    if page_size < 0:
        raise InvalidArgument("page_size must be >= 0")
    return min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)


def check_reason(what: str, reason: str) -> None:
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument(f"{what} is longer than {MAX_REASON_LENGTH} characters")


def check_metric_names(metrics: Mapping[str, float], *, what: str) -> None:
    if len(metrics) > MAX_METRICS_PER_REPORT:
        raise InvalidArgument(f"{what}: at most {MAX_METRICS_PER_REPORT} metrics")
    for name in metrics:
        check_name("metric", name)


def non_finite(metrics: Mapping[str, float]) -> list[str]:
    """The names of the metrics whose value is NaN or infinite."""
    return [k for k, v in metrics.items() if not math.isfinite(v)]
