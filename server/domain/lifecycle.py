"""The trial lifecycle as pure transitions: each takes trials (and the time) and returns the
trials as they become, or raises a domain error. No SQL, no gRPC: the service loads what a
rule needs, applies it and saves the result in one unit of work.

    REQUESTED --start--> ACTIVE --complete--> COMPLETED | STOPPED_EARLY | INFEASIBLE
        ^                  |  \\--fail-----> FAILED
        |                  |   \\--lease expires--> LOST --(retry budget)--> new REQUESTED trial
        \\----release------/
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from tunewire.server.domain.early_stopping import StopDecision
from tunewire.server.domain.errors import (
    InvalidArgument,
    LeaseExpired,
    StepAlreadyReported,
    TrialFinished,
    TrialNotHeld,
    TrialNotStarted,
)
from tunewire.server.domain.limits import non_finite
from tunewire.server.domain.space import Params
from tunewire.server.domain.study import (
    RESULT_STATES,
    Measurement,
    StudySpec,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)


def new_trial(
    params: Params,
    source: TrialSource,
    now: float,
    *,
    retry_of: int = 0,
    attempt: int = 0,
    request_id: str = "",
) -> Trial:
    """A trial waiting in the study's queue for a worker (its id is given when stored)."""
    return Trial(
        "",
        0,
        params,
        TrialState.REQUESTED,
        source,
        retry_of=retry_of,
        attempt=attempt,
        create_time=now,
        request_id=request_id,
    )


def start(trial: Trial, worker_id: str, now: float, lease_end: float) -> Trial:
    """A REQUESTED trial handed to `worker_id` at `now`, with a lease until `lease_end`."""
    return trial.evolve(
        state=TrialState.ACTIVE,
        worker_id=worker_id,
        start_time=now,
        lease_expires=lease_end,
    )


def renew(trial: Trial, lease_end: float) -> Trial:
    """The held trial with its lease extended to `lease_end` (a report or heartbeat)."""
    return trial.evolve(lease_expires=lease_end)


def lease_expired(trial: Trial, now: float) -> bool:
    """Whether the trial is ACTIVE with a lease that ended before `now`."""
    return trial.state is TrialState.ACTIVE and trial.lease_expires < now


def expire(trial: Trial, now: float) -> Trial:
    """An ACTIVE trial whose lease ran out, marked LOST."""
    return trial.evolve(
        state=TrialState.LOST,
        end_time=now,
        reason=(
            f"its lease expired at {when(trial.lease_expires)} with no report or heartbeat "
            f"from worker {trial.worker_id!r}"
        ),
    )


def when(seconds: float) -> str:
    """A server time (Unix seconds) as people read it, in UTC."""
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float) -> str:
    """A duration in the largest units that keep it readable: '42 s', '3 min 12 s'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days"


def retry(lost: Trial, now: float, max_retries: int) -> Trial | None:
    """The lost trial's configuration queued again as a new REQUESTED trial (its attempt
    plus one); None once the configuration has been retried `max_retries` times."""
    if lost.attempt >= max_retries:
        return None
    return new_trial(
        lost.parameters,
        TrialSource.RETRY,
        now,
        retry_of=lost.id,
        attempt=lost.attempt + 1,
    )


def held(trial: Trial, worker_id: str, action: str, now: float) -> Trial:
    """The trial, when it is ACTIVE and held by `worker_id`.

    Args:
        action: what the worker asks to do ("report on", "complete"...), for the message.

    Raises:
        TrialNotHeld, LeaseExpired, TrialNotStarted, TrialFinished: why it may not.
    """
    if trial.state is TrialState.ACTIVE:
        if trial.worker_id != worker_id:
            raise TrialNotHeld(
                f"trial {trial.id} is held by worker {trial.worker_id!r}, not {worker_id!r}; "
                f"only its holder may {action} it"
            )
        return trial
    if trial.state is TrialState.LOST:
        # How long ago the lease ended (the trial is marked lost later, when next read).
        ended = trial.lease_expires or trial.end_time
        raise LeaseExpired(
            f"trial {trial.id} was lost: {trial.reason} ({ago(now - ended)} ago); cannot "
            f"{action} it. Report or heartbeat more often than the study's "
            "lease_timeout_seconds (the Python client's trial.heartbeat() does)"
        )
    if trial.state is TrialState.REQUESTED:
        raise TrialNotStarted(
            f"trial {trial.id} is not held by any worker; get it from SuggestTrials first"
        )
    raise TrialFinished(
        f"trial {trial.id} is already {trial.state.value}; cannot {action} a finished trial"
    )


def stop(trial: Trial, decision: StopDecision) -> Trial:
    """The trial told to stop: it keeps running until its worker completes it."""
    return trial.evolve(stop_decision=decision)


def repeats_completion(
    trial: Trial,
    worker_id: str,
    final: Measurement | None,
    infeasible_reason: str,
) -> bool:
    """Whether a CompleteTrial is a retry of the one that finished this trial (then it is
    answered with the trial as it is)."""
    if trial.state not in FINISHED or trial.worker_id != worker_id:
        return False
    if infeasible_reason:
        return trial.state is TrialState.INFEASIBLE and trial.reason == infeasible_reason
    if final is not None:
        return trial.final_metrics == dict(final.metrics)
    return trial.state in RESULT_STATES


FINISHED = frozenset(
    {TrialState.COMPLETED, TrialState.STOPPED_EARLY, TrialState.INFEASIBLE, TrialState.FAILED}
)


def complete(
    trial: Trial,
    spec: StudySpec,
    final: Measurement | None,
    infeasible_reason: str,
    last_report: Measurement | None,
    now: float,
) -> Trial:
    """The held trial finished: INFEASIBLE when asked or when an objective is NaN/inf,
    else COMPLETED (STOPPED_EARLY when it had been told to stop). Without a final
    measurement the last report is the final one; the final step and elapsed seconds are
    the final measurement's when set (non-zero), else the last report's.

    Args:
        final: the final measurement given (None: the last report is the final one).
        infeasible_reason: when not empty, the trial ends INFEASIBLE with this reason.
        last_report: the trial's report of the highest step (None: it has none, or it
            is not needed: `infeasible_reason` is given).

    Raises:
        InvalidArgument: no final metrics and no report, an objective missing, or a
            metric that is not an objective not finite.
    """
    if infeasible_reason:
        return _finish(trial, TrialState.INFEASIBLE, None, infeasible_reason, now)
    if final is None:
        if last_report is None:
            raise InvalidArgument(
                f"trial {trial.id} has no reports: give the final metrics "
                f"{[m.name for m in spec.metrics]}"
            )
        final = last_report
    final_metrics = final.metrics
    missing = [m.name for m in spec.metrics if m.name not in final_metrics]
    if missing:
        raise InvalidArgument(
            f"the final measurement lacks the study's metrics {missing}; got "
            f"{sorted(final_metrics)}"
        )
    bad_objectives = [m.name for m in spec.metrics if not math.isfinite(final_metrics[m.name])]
    if bad_objectives:
        reason = f"non-finite final value of {bad_objectives} (NaN or infinite)"
        return _finish(trial, TrialState.INFEASIBLE, None, reason, now)
    bad_extra = non_finite(final_metrics)
    if bad_extra:
        raise InvalidArgument(
            f"final metrics {bad_extra} are not finite; leave them out or report finite values"
        )
    state = TrialState.STOPPED_EARLY if trial.stop_decision else TrialState.COMPLETED
    done = _finish(trial, state, dict(final_metrics), "", now)
    step, elapsed = final.step, final.elapsed_seconds
    if last_report is not None:
        step = step or last_report.step
        elapsed = elapsed or last_report.elapsed_seconds
    return done.evolve(final_step=step, final_elapsed_seconds=elapsed)


def recorded(
    params: Params, spec: StudySpec, final: Measurement, now: float, request_id: str = ""
) -> Trial:
    """A configuration with a result known from elsewhere (a warm start), as a COMPLETED
    trial.

    Raises:
        InvalidArgument: an objective missing, or a value not finite.
    """
    missing = [m.name for m in spec.metrics if m.name not in final.metrics]
    if missing:
        raise InvalidArgument(f"the final measurement lacks the study's metrics {missing}")
    bad = non_finite(final.metrics)
    if bad:
        raise InvalidArgument(f"final metrics {bad} are not finite")
    return new_trial(params, TrialSource.USER, now, request_id=request_id).evolve(
        state=TrialState.COMPLETED,
        final_metrics=dict(final.metrics),
        final_step=final.step,
        final_elapsed_seconds=final.elapsed_seconds,
        start_time=now,
        end_time=now,
    )


def same_request(trial: Trial, params: Params, final: Measurement | None) -> bool:
    """Whether an AddTrial repeating a request id asks for the trial it made: the same
    parameters, and the same result when it gives one."""
    if dict(trial.parameters) != dict(params):
        return False
    return final is None or trial.final_metrics == dict(final.metrics)


def fail(trial: Trial, reason: str, now: float) -> Trial:
    """The held trial FAILED at `now`, with `reason` (a placeholder when empty)."""
    return _finish(trial, TrialState.FAILED, None, reason or "failed (no reason given)", now)


def _finish(
    trial: Trial,
    state: TrialState,
    final_metrics: Mapping[str, float] | None,
    reason: str,
    now: float,
) -> Trial:
    return trial.evolve(
        state=state,
        final_metrics=final_metrics,
        reason=reason,
        end_time=now,
        lease_expires=0.0,
    )


def release(trial: Trial) -> Trial:
    """The held trial handed back unfinished: queued again, to start afresh (its reports
    are dropped with it, as they would clash step by step with the next worker's)."""
    return trial.evolve(
        state=TrialState.REQUESTED,
        worker_id="",
        lease_expires=0.0,
        start_time=0.0,
        stop_decision=None,
        measurements=[],
    )


def check_report(spec: StudySpec, measurement: Measurement) -> None:
    """A report must carry at least one of the study's metrics (else InvalidArgument)."""
    objective_names = {m.name for m in spec.metrics}
    if not objective_names & set(measurement.metrics):
        raise InvalidArgument(
            f"the measurement has none of the study's metrics {sorted(objective_names)}; "
            f"got {sorted(measurement.metrics)}"
        )


def check_same_report(trial_id: int, existing: Measurement, new: Measurement) -> None:
    """A step reported again must repeat its values (a retried report); else
    StepAlreadyReported."""
    if dict(existing.metrics) != dict(new.metrics):
        raise StepAlreadyReported(
            f"step {new.step} of trial {trial_id} was already reported with other values "
            f"{dict(existing.metrics)}; report each step once"
        )


# -- the study's budget ----------------------------------------------------------------------
@dataclass(frozen=True)
class TrialTally:
    """What the budget rules read of a study: trials ever created, and those LOST,
    REQUESTED and ACTIVE now."""

    created: int
    lost: int
    requested: int
    active: int

    @property
    def budget_used(self) -> int:
        """Trials that count against `max_trials`: all but the LOST and the queued."""
        return self.created - self.lost - self.requested


def new_trial_room(spec: StudySpec, tally: TrialTally, wanted: int) -> int:
    """How many of `wanted` trials may start now, within the budget and concurrency cap."""
    room = wanted
    if spec.max_trials > 0:
        room = min(room, spec.max_trials - tally.budget_used)
    if spec.max_concurrent_trials > 0:
        room = min(room, spec.max_concurrent_trials - tally.active)
    return max(0, room)


def share_out(wants: Sequence[int], room: int) -> list[int]:
    """Trials for each ask, in order, until `room` is used."""
    out = []
    for want in wants:
        got = max(0, min(want, room))
        out.append(got)
        room -= got
    return out


def budget_spent(spec: StudySpec, state: StudyState, tally: TrialTally) -> bool:
    """Whether an ACTIVE study with a budget has used it and has nothing left running or
    queued: then it is COMPLETED."""
    return (
        spec.max_trials > 0
        and state is StudyState.ACTIVE
        and tally.budget_used >= spec.max_trials
        and tally.active == 0
        and tally.requested == 0
    )
