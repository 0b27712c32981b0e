"""The documented limits of the API and the checks that enforce them on every request,
before anything is read or written. README and docs/api.md list the same numbers.

Numbers are bounded so that every value round-trips exactly through the wire (int64,
double), JSON and both databases, and so that the arithmetic done on them (a parameter's
span, means of reports, rung steps) stays finite."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from tunewire.server.domain.errors import InvalidArgument, TrialNotFound

# Integers a double holds exactly (JavaScript's Number.MAX_SAFE_INTEGER): integer bounds,
# steps.
MAX_EXACT_INTEGER = 2**53 - 1
# Magnitude of float bounds, discrete values, thresholds and reported values.
MAX_MAGNITUDE = 1e300
MAX_STEP = MAX_EXACT_INTEGER
MAX_ELAPSED_SECONDS = 1e9
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 30 * 24 * 3600.0
MAX_TRIALS = 10_000_000
MAX_TRIAL_RETRIES = 100
MAX_GRID_RESOLUTION = 1000
MAX_GRID_POINTS = 100_000
# Successive halving: rungs min_resource * factor^k, so at most a few hundred up to MAX_STEP.
MIN_REDUCTION_FACTOR = 1.1
MAX_REDUCTION_FACTOR = 100.0
MAX_NAME_LENGTH = 128
MAX_CHOICE_LENGTH = 256
MAX_PARAMETERS = 1000
MAX_CHOICES = 10_000
MAX_METRICS = 16
MAX_SUGGEST_COUNT = 100
MAX_PAGE_SIZE = 1000
MAX_WORKER_ID_LENGTH = 256
MAX_TRIAL_ID = 2**31 - 1
MAX_REQUEST_ID_LENGTH = 128
MAX_REASON_LENGTH = 4096
MAX_METRICS_PER_REPORT = 256
# A study's spec on the wire, and a listing page: a page holds whole items up to this
# size (at least one), which stays under gRPC's default 4 MiB for a client's answers.
MAX_SPEC_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 3 * 1024 * 1024
# Entries of ListTrials' state filter (there are 7 states; repeats are ignored).
MAX_STATE_FILTER = 100
# Reports (rows of values) in one ListStudyChanges answer.
MAX_CHANGED_REPORTS = 100_000
# How far a ListStudyChanges cursor reaches back before the time of the read that issued
# it: a change stamped then but committed after the read (a transaction in flight, a
# replica's clock a little behind) is still given by the next call.
CHANGES_OVERLAP_SECONDS = 1.0
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
# User input quoted back in an error message is cut to this many characters.
MAX_QUOTED = 60


def shown(value: object, limit: int = MAX_QUOTED) -> str:
    """`repr(value)`, cut to `limit` characters: error messages quote user input, and a
    quoted 10,000-character name would not fit in a status message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def listed(values: Iterable[object], limit: int = 10) -> str:
    """A bounded listing of values, for messages: the first few and how many in all."""
    items = list(values)
    text = ", ".join(shown(v, 30) for v in items[:limit])
    return f"[{text}{f', … ({len(items)} in all)' if len(items) > limit else ''}]"


def did_you_mean(word: str, options: Collection[str]) -> str:
    """' (did you mean 'x'?)' when `word` is close to one of `options`, else ''."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(where: str, raw: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuses keys a spec does not have, naming the closest known one.

    Args:
        where: what `raw` is, for the message ("study spec", "metric").
        raw: the mapping read from a user's spec.
        known: the keys it may have.

    Raises:
        InvalidArgument: a key of `raw` is not in `known`.
    """
    for key in raw:
        if key not in known:
            raise InvalidArgument(
                f"{where}: unknown key {shown(key)}{did_you_mean(str(key), known)}; "
                f"the keys are {sorted(known)}"
            )


def check_count(what: str, value: int, high: int, *, low: int = 0) -> int:
    """`value`, when within `low`..`high` (inclusive).

    Args:
        what: the setting's name, for the message.
        value: the number given.
        high: the largest allowed.
        low: the smallest allowed.

    Raises:
        InvalidArgument: `value` is out of range.
    """
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be between {low} and {high:,}, got {shown(value)}")
    return value


def check_magnitude(what: str, value: float) -> float:
    """`value`, when a finite number within ±MAX_MAGNITUDE; `what` names it in the message.

    Raises:
        InvalidArgument: it is NaN, infinite or too large.
    """
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise InvalidArgument(
            f"{what} must be a finite number within ±{MAX_MAGNITUDE:g}, got {shown(value)}"
        )
    return value


# Characters that reorder or break lines where a name is shown: C1 controls, line and
# paragraph separators, and the bidirectional embeddings, overrides and isolates.
_INVISIBLE_CONTROLS = frozenset(
    [*map(chr, range(0x80, 0xA0)), "\u2028", "\u2029"]
    + [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (C0, DEL, C1) or one that changes how the
    text around it reads (line separators, bidirectional controls)."""
    return any(ord(c) < 32 or ord(c) == 127 or c in _INVISIBLE_CONTROLS for c in text)


def check_worker_id(worker_id: str) -> None:
    """A worker id: 1 to MAX_WORKER_ID_LENGTH characters, no control characters.

    Raises:
        InvalidArgument: it is empty, too long or has control characters.
    """
    if not worker_id:
        raise InvalidArgument(
            "worker_id is required: give a stable id of the worker, e.g. host:gpu0"
        )
    if len(worker_id) > MAX_WORKER_ID_LENGTH:
        raise InvalidArgument(f"worker_id is longer than {MAX_WORKER_ID_LENGTH} characters")
    if has_control_characters(worker_id):
        raise InvalidArgument(f"worker_id {shown(worker_id)} has control characters")


def check_trial_id(trial_id: int) -> None:
    """Trial ids are 1, 2, ... per study, below 2^31.

    Raises:
        InvalidArgument: `trial_id` is 0 or negative.
        TrialNotFound: it is too large to be any trial's.
    """
    if trial_id <= 0:
        raise InvalidArgument(
            f"trial_id must be a trial's id from SuggestTrials or ListTrials, got {trial_id}"
        )
    if trial_id > MAX_TRIAL_ID:
        raise TrialNotFound(f"trial {trial_id} not found (trial ids are below 2^31)")


def check_suggest_count(count: int) -> int:
    """The number of trials to hand out for `count` (0 means 1).

    Raises:
        InvalidArgument: `count` is negative or above MAX_SUGGEST_COUNT.
    """
    if count < 0 or count > MAX_SUGGEST_COUNT:
        raise InvalidArgument(f"count must be between 1 and {MAX_SUGGEST_COUNT}, got {count}")
    return count or 1


def check_page_size(page_size: int) -> int:
    """The page size to use for `page_size` (0, or more than MAX_PAGE_SIZE: the largest).

    Raises:
        InvalidArgument: `page_size` is negative.
    """
    if page_size < 0:
        raise InvalidArgument("page_size must be >= 0")
    return min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)


def check_reason(what: str, reason: str) -> None:
    """Free text (a failure's reason, a traceback): up to MAX_REASON_LENGTH characters,
    any but NUL; `what` names the field in the message.

    Raises:
        InvalidArgument: it is too long or contains NUL.
    """
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument(f"{what} is longer than {MAX_REASON_LENGTH} characters")
    if "\x00" in reason:
        raise InvalidArgument(f"{what} contains a NUL character")


def check_name(what: str, name: str) -> None:
    """A study, parameter or metric name: `NAME_PATTERN`; `what` says which, for the message.

    Raises:
        InvalidArgument: `name` is not a string matching the pattern.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"{what} name {shown(name)} is invalid: use 1-{MAX_NAME_LENGTH} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )


def check_metric_names(metrics: Mapping[str, float], *, what: str) -> None:
    """At most MAX_METRICS_PER_REPORT metrics, each with a valid name; `what` is the
    report's kind, for the message.

    Raises:
        InvalidArgument: too many metrics, or an invalid name.
    """
    if len(metrics) > MAX_METRICS_PER_REPORT:
        raise InvalidArgument(f"{what}: at most {MAX_METRICS_PER_REPORT} metrics")
    for name in metrics:
        check_name("metric", name)


def check_metric_values(metrics: Mapping[str, float], *, what: str) -> None:
    """Finite values within ±MAX_MAGNITUDE (NaN and infinities are the caller's rule):
    larger ones would overflow the sums and means early stopping takes of them.

    Raises:
        InvalidArgument: a finite value beyond ±MAX_MAGNITUDE.
    """
    for name, value in metrics.items():
        if math.isfinite(value) and abs(value) > MAX_MAGNITUDE:
            raise InvalidArgument(
                f"{what}: {name} = {value:g} is beyond ±{MAX_MAGNITUDE:g}; rescale the metric"
            )


def check_request_id(request_id: str) -> None:
    """An AddTrial request id: up to MAX_REQUEST_ID_LENGTH characters, no control
    characters ("" for none).

    Raises:
        InvalidArgument: it is too long or has control characters.
    """
    if len(request_id) > MAX_REQUEST_ID_LENGTH or has_control_characters(request_id):
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_LENGTH} characters without control "
            f"characters, got {shown(request_id)}"
        )


def check_final(final: Any) -> None:
    """A final measurement (a `Measurement`): its metrics' names and sizes, its step and
    elapsed seconds (non-finite values are the lifecycle's rule, see `complete`).

    Raises:
        InvalidArgument: one of them is out of range.
    """
    check_metric_names(final.metrics, what="final measurement")
    check_metric_values(final.metrics, what="final measurement")
    check_step(final.step)
    check_elapsed(final.elapsed_seconds)


def check_step(step: int) -> None:
    """Raises InvalidArgument unless 0 <= `step` <= MAX_STEP."""
    if not 0 <= step <= MAX_STEP:
        raise InvalidArgument(f"step must be between 0 and {MAX_STEP:,}, got {shown(step)}")


def check_elapsed(seconds: float) -> None:
    """Raises InvalidArgument unless `seconds` is finite, 0 to MAX_ELAPSED_SECONDS."""
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_ELAPSED_SECONDS):
        raise InvalidArgument(
            f"elapsed_seconds must be between 0 and {MAX_ELAPSED_SECONDS:g}, got {shown(seconds)}"
        )


def non_finite(metrics: Mapping[str, float]) -> list[str]:
    """The names of the metrics whose value is NaN or infinite."""
    return [k for k, v in metrics.items() if not math.isfinite(v)]
