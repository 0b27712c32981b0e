"""Early-stopping rules: decide from a trial's learning curve and the study's history whether
the trial should stop. Pure functions; the service calls `decide` inside a report request.

Curves are lists of (step, value) of the primary metric, sorted by step. Values are turned
into "loss" form (smaller is better) by the caller, so every rule minimises.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunewire.server.errors import InvalidArgument
from tunewire.server.study import EarlyStoppingPolicy, StopDecision

Curve = Sequence[tuple[int, float]]

# Each rule's settings and defaults; validate_policy rejects anything else.
RULE_DEFAULTS: dict[str, dict[str, float]] = {
    "none": {},
    "median": {"min_completed_trials": 5, "grace_period_steps": 1, "use_step_values": 0},
    "successive_halving": {"min_resource": 1, "reduction_factor": 3.0, "max_resource": 0},
    "patience": {"patience_steps": 5, "min_delta": 0.0},
    "threshold": {"bound": math.nan, "after_step": 0},
}
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
            f"unknown early-stopping rule {policy.rule!r}; use one of {', '.join(RULE_DEFAULTS)}"
        )
    defaults = RULE_DEFAULTS[rule]
    unknown = sorted(set(policy.settings) - set(defaults))
    if unknown:
        raise InvalidArgument(
            f"early-stopping rule {rule!r} has no settings {unknown}; it takes {sorted(defaults)}"
        )
    settings: dict[str, float] = {}
    for key, default in defaults.items():
        raw: Any = policy.settings.get(key)
        # 0 stands for "default" on the wire (proto3 has no presence for scalars).
        if raw is None or (raw == 0 and key not in ("min_delta", "after_step", "bound")):
            raw = default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise InvalidArgument(f"early stopping: {key} must be a number, got {raw!r}") from None
        if key in BOOLEAN_SETTINGS:
            if value not in (0.0, 1.0):
                raise InvalidArgument(f"early stopping: {key} must be true or false")
            value = int(value)
        if key in INTEGER_SETTINGS:
            if not math.isfinite(value) or value != int(value) or value < 0:
                raise InvalidArgument(f"early stopping: {key} must be a whole number >= 0")
            value = int(value)
        settings[key] = value
    if rule == "successive_halving":
        if settings["reduction_factor"] <= 1 or not math.isfinite(settings["reduction_factor"]):
            raise InvalidArgument("successive halving: reduction_factor must be > 1 (e.g. 3)")
        if settings["min_resource"] < 1:
            raise InvalidArgument("successive halving: min_resource must be >= 1")
        if settings["max_resource"] and settings["max_resource"] < settings["min_resource"]:
            raise InvalidArgument("successive halving: max_resource must be >= min_resource")
    if rule == "patience" and settings["patience_steps"] < 1:
        raise InvalidArgument("patience: patience_steps must be >= 1")
    if rule == "patience" and (
        settings["min_delta"] < 0 or not math.isfinite(settings["min_delta"])
    ):
        raise InvalidArgument("patience: min_delta must be a finite number >= 0")
    if rule == "threshold" and not math.isfinite(settings["bound"]):
        raise InvalidArgument("threshold: give a finite bound")
    if rule == "median" and settings["min_completed_trials"] < 1:
        raise InvalidArgument("median: min_completed_trials must be >= 1")
    return EarlyStoppingPolicy(rule, settings)


@dataclass(frozen=True)
class PeerCurve:
    """Another trial of the study: its curve and whether it trained to the end
    (COMPLETED; early-stopped trials are not completed peers)."""

    trial_id: int
    curve: Curve
    completed: bool


@dataclass(frozen=True)
class PeerQuery:
    """Which peer curves a decision needs, so the service loads no more than that."""

    completed_only: bool
    max_step: int | None


def peers_needed(policy: EarlyStoppingPolicy, curve: Curve) -> PeerQuery | None:
    """None when the decision for this report needs no other trial's curve."""
    if not curve:
        return None
    step = curve[-1][0]
    s = policy.settings
    if policy.rule == "median":
        if step < s["grace_period_steps"]:
            return None
        return PeerQuery(completed_only=True, max_step=step)
    if policy.rule == "successive_halving":
        previous = curve[-2][0] if len(curve) > 1 else -1
        rungs = rung_steps(
            int(s["min_resource"]), float(s["reduction_factor"]), int(s["max_resource"]), step
        )
        if not any(r > previous for r in rungs):
            return None
        return PeerQuery(completed_only=False, max_step=None)
    return None


def decide(
    policy: EarlyStoppingPolicy, trial_id: int, curve: Curve, peers: Sequence[PeerCurve]
) -> StopDecision | None:
    """Whether the trial with this curve (just extended by its latest report) should stop.

    Args:
        policy: a validated policy.
        trial_id: the trial being decided (excluded from `peers` by the caller or here).
        curve: its (step, loss) reports, sorted by step, the newest last.
        peers: the other trials of the study.
    Returns:
        A StopDecision, or None to continue.
    """
    if not curve or policy.rule == "none":
        return None
    s = policy.settings
    step, value = curve[-1]
    others = [p for p in peers if p.trial_id != trial_id]
    if policy.rule == "median":
        return _median(
            int(s["min_completed_trials"]),
            int(s["grace_period_steps"]),
            bool(s["use_step_values"]),
            curve,
            others,
        )
    if policy.rule == "successive_halving":
        return _successive_halving(
            int(s["min_resource"]),
            float(s["reduction_factor"]),
            int(s["max_resource"]),
            curve,
            others,
        )
    if policy.rule == "patience":
        return _patience(int(s["patience_steps"]), float(s["min_delta"]), curve)
    if policy.rule == "threshold":
        if step >= s["after_step"] and value > s["bound"]:
            return StopDecision(
                step, "threshold", f"value {value:.6g} at step {step} is worse than {s['bound']:g}"
            )
        return None
    raise InvalidArgument(f"unknown early-stopping rule {policy.rule!r}")


def _median(
    min_completed: int,
    grace: int,
    use_step_values: bool,
    curve: Curve,
    peers: Sequence[PeerCurve],
) -> StopDecision | None:
    step = curve[-1][0]
    if step < grace:
        return None
    averages = []
    for peer in peers:
        if not peer.completed:
            continue
        upto = [v for st, v in peer.curve if st <= step]
        if upto:
            # The peer's value at the step (its latest report up to it), or its running average.
            averages.append(upto[-1] if use_step_values else sum(upto) / len(upto))
    if len(averages) < min_completed:
        return None
    median = statistics.median(averages)
    best = min(v for _, v in curve)
    if best > median:
        return StopDecision(
            step,
            "median",
            f"best value {best:.6g} by step {step} is worse than the median {median:.6g} of "
            f"{len(averages)} completed trials' "
            + ("values at the step" if use_step_values else "running averages"),
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


def _value_at(curve: Curve, rung: int) -> float | None:
    """A trial's value at a rung: its first report at or after the rung step."""
    for st, v in curve:
        if st >= rung:
            return v
    return None


def _successive_halving(
    min_resource: int, eta: float, max_resource: int, curve: Curve, peers: Sequence[PeerCurve]
) -> StopDecision | None:
    step = curve[-1][0]
    previous_step = curve[-2][0] if len(curve) > 1 else -1
    # Decide only at the report that reaches a rung (a crossed rung counts as reached).
    rungs = [r for r in rung_steps(min_resource, eta, max_resource, step) if r > previous_step]
    if not rungs:
        return None
    rung = rungs[-1]
    mine = curve[-1][1]
    competing = sorted([v for p in peers if (v := _value_at(p.curve, rung)) is not None] + [mine])
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
