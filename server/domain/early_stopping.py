"""Early-stopping rules: decide from a trial's learning curve and the study's history whether
the trial should stop. Pure functions. Inside a report request the service asks
`peers_needed` what the rule reads from the other trials (one number per trial), has the
database compute those numbers, and calls `decide_from_values`; `decide` is the same
decision from the other trials' whole curves.

Curves are lists of (step, value) of the primary metric, sorted by step. Values are turned
into "loss" form (smaller is better) by the caller, so every rule minimises.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewire.server.domain.errors import InvalidArgument
from tunewire.server.domain.limits import (
    MAX_MAGNITUDE,
    MAX_REDUCTION_FACTOR,
    MAX_STEP,
    MAX_TRIALS,
    MIN_REDUCTION_FACTOR,
    did_you_mean,
    shown,
)

Curve = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class EarlyStoppingPolicy:
    """The rule name ('none', 'median', 'successive_halving', 'patience', 'threshold') and its
    settings. Validated, with defaults filled in, by `validate_policy`."""

    rule: str = "none"
    settings: Mapping[str, float] = field(default_factory=dict)
    # The step of a full-length trial's last report (0: not given): never stopped at it.
    max_step: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {"rule": self.rule, **{k: self.settings[k] for k in sorted(self.settings)}}
        if self.max_step:
            out["max_step"] = self.max_step
        return out

    def ends_at(self, step: int) -> bool:
        """Whether a report at `step` is a full-length trial's last (not to be stopped)."""
        return 0 < self.max_step <= step


@dataclass(frozen=True)
class StopDecision:
    step: int
    rule: str
    reason: str


# Each rule's settings and defaults; validate_policy rejects anything else.
RULE_DEFAULTS: dict[str, dict[str, float]] = {
    "none": {},
    "median": {"min_completed_trials": 5, "grace_period_steps": 1, "use_step_values": 0},
    "successive_halving": {"min_resource": 1, "reduction_factor": 3.0, "max_resource": 0},
    "patience": {"patience_steps": 5, "min_delta": 0.0},
    "threshold": {"bound": math.nan, "after_step": 0},
}
# The rules that read other trials' curves (peers_needed can ask for something).
PEER_RULES = frozenset({"median", "successive_halving"})
BOOLEAN_SETTINGS = {"use_step_values"}
INTEGER_SETTINGS = {
    "min_completed_trials",
    "grace_period_steps",
    "min_resource",
    "max_resource",
    "patience_steps",
    "after_step",
}


def validate_policy(policy: EarlyStoppingPolicy) -> EarlyStoppingPolicy:
    """Returns the policy with defaults filled in; raises InvalidArgument on bad settings."""
    rule = (policy.rule or "none").lower()
    rule = {"asha": "successive_halving", "median_stopping": "median"}.get(rule, rule)
    if rule not in RULE_DEFAULTS:
        raise InvalidArgument(
            f"unknown early-stopping rule {shown(policy.rule)}"
            f"{did_you_mean(rule, RULE_DEFAULTS)}; use one of {', '.join(RULE_DEFAULTS)}"
        )
    max_step = policy.max_step
    if not isinstance(max_step, int) or isinstance(max_step, bool) or not 0 <= max_step <= MAX_STEP:
        raise InvalidArgument(
            f"early stopping: max_step must be a whole number from 0 to {MAX_STEP:,}, "
            f"got {shown(max_step)}"
        )
    defaults = RULE_DEFAULTS[rule]
    for key in policy.settings:
        if key not in defaults:
            raise InvalidArgument(
                f"early-stopping rule {rule!r} has no setting {shown(key)}"
                f"{did_you_mean(str(key), defaults)}; it takes {sorted(defaults)}"
            )
    settings: dict[str, float] = {}
    for key, default in defaults.items():
        raw: Any = policy.settings.get(key)
        # 0 stands for "default" on the wire (proto3 has no presence for scalars).
        if raw is None or (raw == 0 and key not in ("min_delta", "after_step", "bound")):
            raw = default
        if isinstance(raw, str) or (isinstance(raw, bool) and key not in BOOLEAN_SETTINGS):
            raise InvalidArgument(f"early stopping: {key} must be a number, got {shown(raw)}")
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(
                f"early stopping: {key} must be a number, got {shown(raw)}"
            ) from None
        if key in BOOLEAN_SETTINGS:
            if value not in (0.0, 1.0):
                raise InvalidArgument(f"early stopping: {key} must be true or false")
            value = int(value)
        elif key in INTEGER_SETTINGS:
            high = MAX_TRIALS if key == "min_completed_trials" else MAX_STEP
            if not math.isfinite(value) or value != int(value) or not 0 <= value <= high:
                raise InvalidArgument(
                    f"early stopping: {key} must be a whole number from 0 to {high:,}, "
                    f"got {shown(raw)}"
                )
            value = int(value)
        elif key == "min_delta" and (not math.isfinite(value) or abs(value) > MAX_MAGNITUDE):
            raise InvalidArgument(
                f"early stopping: {key} must be a finite number within ±{MAX_MAGNITUDE:g}"
            )
        settings[key] = value
    if rule == "successive_halving":
        if not MIN_REDUCTION_FACTOR <= settings["reduction_factor"] <= MAX_REDUCTION_FACTOR:
            raise InvalidArgument(
                f"successive halving: reduction_factor must be from {MIN_REDUCTION_FACTOR:g} "
                f"to {MAX_REDUCTION_FACTOR:g} (e.g. 3)"
            )
        if settings["min_resource"] < 1:
            raise InvalidArgument("successive halving: min_resource must be >= 1")
        if settings["max_resource"] and settings["max_resource"] < settings["min_resource"]:
            raise InvalidArgument("successive halving: max_resource must be >= min_resource")
    if rule == "patience" and settings["patience_steps"] < 1:
        raise InvalidArgument("patience: patience_steps must be >= 1")
    if rule == "patience" and settings["min_delta"] < 0:
        raise InvalidArgument("patience: min_delta must be a finite number >= 0")
    if rule == "threshold" and (
        not math.isfinite(settings["bound"]) or abs(settings["bound"]) > MAX_MAGNITUDE
    ):
        raise InvalidArgument(f"threshold: give a finite bound within ±{MAX_MAGNITUDE:g}")
    if rule == "median" and settings["min_completed_trials"] < 1:
        raise InvalidArgument("median: min_completed_trials must be >= 1")
    return EarlyStoppingPolicy(rule, settings, max_step if rule != "none" else 0)


@dataclass(frozen=True)
class PeerCurve:
    """Another trial of the study: its curve and whether it trained to the end
    (COMPLETED; early-stopped trials are not completed peers)."""

    trial_id: int
    curve: Curve
    completed: bool


@dataclass(frozen=True)
class PeerQuery:
    """The one number per peer trial that a decision reads. The service has the database
    compute it, rather than load every peer's whole curve on each report:

    - "last": the peer's value at its latest report at or before `step`;
    - "mean": the mean of its reports at or before `step` (its running average);
    - "first": its value at its first report at or after `step`.

    Peers without such a report are left out; `completed_only` keeps COMPLETED peers.
    """

    completed_only: bool
    reduce: str
    step: int


def peers_needed(policy: EarlyStoppingPolicy, curve: Curve) -> PeerQuery | None:
    """What a decision for this report needs from the other trials; None when it needs
    nothing from them."""
    if not curve or policy.ends_at(curve[-1][0]):
        return None
    step = curve[-1][0]
    s = policy.settings
    if policy.rule == "median":
        if step < s["grace_period_steps"]:
            return None
        return PeerQuery(True, "last" if s["use_step_values"] else "mean", step)
    if policy.rule == "successive_halving":
        rung = _new_rung(policy, curve)
        return None if rung is None else PeerQuery(False, "first", rung)
    return None


def peer_value(query: PeerQuery, curve: Curve) -> float | None:
    """`query`'s number for one peer's curve (what the database computes in SQL)."""
    if query.reduce == "first":
        return next((v for st, v in curve if st >= query.step), None)
    upto = [v for st, v in curve if st <= query.step]
    if not upto:
        return None
    return upto[-1] if query.reduce == "last" else sum(upto) / len(upto)


def decide(
    policy: EarlyStoppingPolicy, trial_id: int, curve: Curve, peers: Sequence[PeerCurve]
) -> StopDecision | None:
    """Whether the trial with this curve (just extended by its latest report) should stop,
    given the other trials' whole curves.

    Args:
        policy: a validated policy.
        trial_id: the trial being decided (excluded from `peers` here).
        curve: its (step, loss) reports, sorted by step, the newest last.
        peers: the other trials of the study.
    Returns:
        A StopDecision, or None to continue.
    """
    query = peers_needed(policy, curve)
    values: list[float] = []
    if query is not None:
        for peer in peers:
            if peer.trial_id == trial_id or (query.completed_only and not peer.completed):
                continue
            value = peer_value(query, peer.curve)
            if value is not None:
                values.append(value)
    return decide_from_values(policy, curve, values)


def decide_from_values(
    policy: EarlyStoppingPolicy, curve: Curve, peer_values: Sequence[float]
) -> StopDecision | None:
    """`decide` with the peers already reduced: `peer_values` holds, for each other trial,
    the number `peers_needed(policy, curve)` asks for (empty when it asks for none)."""
    if not curve or policy.rule == "none" or policy.ends_at(curve[-1][0]):
        return None
    s = policy.settings
    step, value = curve[-1]
    if policy.rule == "median":
        median = statistics.median(peer_values) if peer_values else None
        return median_decision(policy, curve, len(peer_values), median)
    if policy.rule == "successive_halving":
        rung = _new_rung(policy, curve)
        if rung is None:
            return None
        return _successive_halving(rung, float(s["reduction_factor"]), curve, peer_values)
    if policy.rule == "patience":
        return _patience(int(s["patience_steps"]), float(s["min_delta"]), curve)
    if policy.rule == "threshold":
        if step >= s["after_step"] and value > s["bound"]:
            return StopDecision(
                step, "threshold", f"value {value:.6g} at step {step} is worse than {s['bound']:g}"
            )
        return None
    raise InvalidArgument(f"unknown early-stopping rule {policy.rule!r}")


def median_decision(
    policy: EarlyStoppingPolicy, curve: Curve, count: int, median: float | None
) -> StopDecision | None:
    """The median rule from what it reads of its peers: how many completed peers have a
    value at the step (their latest report up to it, or their running average up to it)
    and the median of those values (None when there are none)."""
    s = policy.settings
    step = curve[-1][0]
    if step < int(s["grace_period_steps"]) or count < int(s["min_completed_trials"]):
        return None
    assert median is not None
    best = min(v for _, v in curve)
    if best > median:
        return StopDecision(
            step,
            "median",
            f"best value {best:.6g} by step {step} is worse than the median {median:.6g} of "
            f"{count} completed trials' "
            + ("values at the step" if s["use_step_values"] else "running averages"),
        )
    return None


def rung_steps(min_resource: int, eta: float, max_resource: int, up_to: int) -> list[int]:
    """Rung steps min_resource * eta^k that are <= up_to (and < max_resource when set)."""
    rungs: list[int] = []
    k = 0
    while True:
        r = int(round(min_resource * eta**k))
        if r > up_to or (max_resource and r >= max_resource):
            return rungs
        if not rungs or r > rungs[-1]:
            rungs.append(r)
        k += 1


def _new_rung(policy: EarlyStoppingPolicy, curve: Curve) -> int | None:
    """The rung this report decides at: the highest rung step reached since the trial's
    previous report (a crossed rung counts as reached), or None."""
    s = policy.settings
    step = curve[-1][0]
    previous_step = curve[-2][0] if len(curve) > 1 else -1
    rungs = rung_steps(
        int(s["min_resource"]), float(s["reduction_factor"]), int(s["max_resource"]), step
    )
    rungs = [r for r in rungs if r > previous_step]
    return rungs[-1] if rungs else None


def _successive_halving(
    rung: int, eta: float, curve: Curve, peer_values: Sequence[float]
) -> StopDecision | None:
    """`peer_values`: the other trials' values at the rung (their first report at or after
    it)."""
    step = curve[-1][0]
    mine = curve[-1][1]
    competing = sorted([*peer_values, mine])
    keep = max(int(len(competing) // eta), 1)
    cutoff = competing[keep - 1]
    if mine > cutoff:
        return StopDecision(
            step,
            "successive_halving",
            f"value {mine:.6g} at rung {rung} is not in the top {keep} of {len(competing)} "
            f"trials (cutoff {cutoff:.6g})",
        )
    return None


def _patience(patience: int, min_delta: float, curve: Curve) -> StopDecision | None:
    if len(curve) <= patience:
        return None
    values = [v for _, v in curve]
    best_before = min(values[:-patience])
    best_recent = min(values[-patience:])
    if best_recent < best_before - min_delta:
        return None
    step = curve[-1][0]
    return StopDecision(
        step,
        "patience",
        f"no improvement of more than {min_delta:g} over {best_before:.6g} in the last "
        f"{patience} reports",
    )


def settings_from_mapping(raw: Mapping[str, Any]) -> dict[str, float]:
    """Drops Nones so that defaults apply (used by the protobuf conversion)."""
    return {k: float(v) for k, v in raw.items() if v is not None}
