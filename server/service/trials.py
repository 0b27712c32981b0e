"""The calls on trials, each one unit of work: load the study and trial, apply the rule
from `domain.lifecycle`, save what it changed. Suggestions live in suggest.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunewire.server.algorithms.base import Observation
from tunewire.server.algorithms.pareto import pareto_front
from tunewire.server.domain import lifecycle
from tunewire.server.domain.early_stopping import PeerQuery, StopDecision
from tunewire.server.domain.errors import InvalidArgument, RequestIdReused, StudyFinished
from tunewire.server.domain.limits import (
    MAX_PAGE_SIZE,
    check_count,
    check_elapsed,
    check_final,
    check_metric_names,
    check_metric_values,
    check_reason,
    check_request_id,
    check_step,
    check_worker_id,
    non_finite,
    shown,
)
from tunewire.server.domain.study import (
    RESULT_STATES,
    Goal,
    Measurement,
    StudyState,
    Trial,
    TrialSource,
    TrialState,
)
from tunewire.server.service.access import StudyAccess
from tunewire.server.service.stopping import PeerNumbers, StopDecisions
from tunewire.server.storage.base import StudyStore


class TrialService:
    """Reports, heartbeats, completion, failure, release, added and read trials.

    Args:
        access: loads studies and trials in a unit of work.
        stopping: the stop decision on a report.
        pre_read_peers: read what a report's stop decision needs of the other trials from
            a snapshot before the report's write transaction (chosen by the composition
            root for a database whose one write transaction holds all of it).
    """

    def __init__(
        self, access: StudyAccess, stopping: StopDecisions, *, pre_read_peers: bool
    ) -> None:
        self.access = access
        self.storage = access.storage
        self.stopping = stopping
        self.pre_read_peers = pre_read_peers

    def report(
        self,
        name: str,
        trial_id: int,
        worker_id: str,
        measurement: Measurement,
        *,
        last_step: bool = False,
    ) -> tuple[StopDecision | None, Trial]:
        """Records a report of the trial's holder and decides whether the trial stops. A
        report repeating a stored step with the same values is answered again.

        Args:
            measurement: the report (its time is the server's).
            last_step: the report is on the trial's last step: the trial ran its full
                length and is not stopped.

        Returns:
            The stop decision (None: go on), and the trial with its lease renewed.

        Raises:
            InvalidArgument: a bad worker id, step, elapsed time or metric, or none of the
                study's metrics.
            StudyNotFound, TrialNotFound: no such study or trial.
            TrialNotHeld, LeaseExpired, TrialNotStarted, TrialFinished: the worker does
                not hold the trial (see `lifecycle.held`).
            StepAlreadyReported: the step was reported with other values.
        """
        check_worker_id(worker_id)
        check_step(measurement.step)
        check_elapsed(measurement.elapsed_seconds)
        if not measurement.metrics:
            raise InvalidArgument("the measurement has no metrics; report at least the objective")
        check_metric_names(measurement.metrics, what="measurement")
        bad = non_finite(measurement.metrics)
        if bad:
            raise InvalidArgument(
                f"metrics {bad} are not finite (NaN or infinite); complete a diverged trial as "
                "infeasible instead (trial.infeasible(reason) in the Python client, "
                "CompleteTrial's infeasible_reason on the wire)"
            )
        check_metric_values(measurement.metrics, what="measurement")
        # The other trials' numbers a median or successive-halving decision needs (a pass
        # over their reports in a large study) are read first from a snapshot, without the
        # write lock, for a study known to need them (see `pre_read_peers`).
        peers: tuple[PeerQuery, PeerNumbers] | None = None
        if self.pre_read_peers and self.stopping.reads_peers(name):
            peers = self.access.read(
                lambda store: self.stopping.peers_beforehand(store, name, trial_id, measurement)
            )

        def op(store: StudyStore) -> tuple[StopDecision | None, Trial]:
            study, spec, found, now = self.access.touch_trial(
                store, name, trial_id, for_update=True
            )
            self.stopping.note_rule(name, spec)
            lifecycle.check_report(spec, measurement)
            trial = lifecycle.held(found, worker_id, "report on", now)
            renewed = lifecycle.renew(trial, spec.lease_end(now))
            stamped = Measurement(
                measurement.step, measurement.metrics, measurement.elapsed_seconds, now
            )
            value = measurement.metrics.get(spec.primary_metric.name)
            if not store.add_measurement(
                study, trial_id, stamped, value, renew_lease_to=renewed.lease_expires
            ):
                existing = store.get_measurement(study, trial_id, measurement.step)
                if existing is not None:
                    lifecycle.check_same_report(trial_id, existing, measurement)
                return renewed.stop_decision, renewed
            if renewed.stop_decision is not None or last_step:
                return renewed.stop_decision, renewed
            decision = self.stopping.decide(store, study, spec, trial_id, peers)
            if decision is None:
                return None, renewed
            stopped = lifecycle.stop(renewed, decision)
            store.save_trial(study, renewed, stopped)
            return decision, stopped

        return self.storage.run(op)

    def heartbeat(self, name: str, trial_id: int, worker_id: str) -> tuple[bool, Trial]:
        """Renews the holder's lease; returns whether the trial has been told to stop, and
        the trial.

        Raises:
            InvalidArgument, StudyNotFound, TrialNotFound, and as `lifecycle.held`.
        """
        check_worker_id(worker_id)

        def op(store: StudyStore) -> tuple[bool, Trial]:
            study, spec, found, now = self.access.touch_trial(
                store, name, trial_id, for_update=True
            )
            trial = lifecycle.held(found, worker_id, "heartbeat", now)
            renewed = lifecycle.renew(trial, spec.lease_end(now))
            store.save_trial(study, trial, renewed)
            return renewed.stop_decision is not None, renewed

        return self.storage.run(op)

    def complete(
        self,
        name: str,
        trial_id: int,
        worker_id: str,
        final: Measurement | None,
        infeasible_reason: str = "",
    ) -> Trial:
        """Finishes the holder's trial (see `lifecycle.complete`), and the study when that
        used its budget; a retry of the call that finished it gets the trial as it is.

        Args:
            final: the final measurement (None: the last report is the final one).
            infeasible_reason: when not empty, the trial ends INFEASIBLE with this reason.

        Raises:
            InvalidArgument: a bad final measurement or reason, or neither a final
                measurement nor a report.
            StudyNotFound, TrialNotFound, and as `lifecycle.held`.
        """
        check_worker_id(worker_id)
        check_reason("infeasible_reason", infeasible_reason)
        if final is not None:
            check_final(final)

        def op(store: StudyStore) -> Trial:
            study, spec, found, now = self.access.touch_trial(
                store, name, trial_id, for_update=True
            )
            if lifecycle.repeats_completion(found, worker_id, final, infeasible_reason):
                return found
            trial = lifecycle.held(found, worker_id, "complete", now)
            last = None
            if not infeasible_reason:
                reports = store.measurements(study, [trial_id]).get(trial_id, [])
                last = reports[-1] if reports else None
            done = lifecycle.complete(trial, spec, final, infeasible_reason, last, now)
            store.save_trial(study, trial, done)
            self.access.complete_if_done(store, study, spec)
            return done

        return self.storage.run(op)

    def fail(self, name: str, trial_id: int, worker_id: str, reason: str) -> Trial:
        """Marks the holder's trial FAILED with `reason` (the study COMPLETED when that
        used its budget); a retry by the same worker gets the trial as it is.

        Raises:
            InvalidArgument, StudyNotFound, TrialNotFound, and as `lifecycle.held`.
        """
        check_worker_id(worker_id)
        check_reason("reason", reason)

        def op(store: StudyStore) -> Trial:
            study, spec, found, now = self.access.touch_trial(
                store, name, trial_id, for_update=True
            )
            if found.state is TrialState.FAILED and found.worker_id == worker_id:
                return found  # a retried FailTrial
            trial = lifecycle.held(found, worker_id, "fail", now)
            failed = lifecycle.fail(trial, reason, now)
            store.save_trial(study, trial, failed)
            self.access.complete_if_done(store, study, spec)
            return failed

        return self.storage.run(op)

    def release(self, name: str, trial_id: int, worker_id: str) -> Trial:
        """Queues the holder's trial again, its reports dropped (see `lifecycle.release`).

        Raises:
            InvalidArgument, StudyNotFound, TrialNotFound, and as `lifecycle.held`.
        """
        check_worker_id(worker_id)

        def op(store: StudyStore) -> Trial:
            study, _, found, now = self.access.touch_trial(store, name, trial_id, for_update=True)
            trial = lifecycle.held(found, worker_id, "release", now)
            released = lifecycle.release(trial)
            store.delete_measurements(study, trial_id)
            store.save_trial(study, trial, released)
            return released

        return self.storage.run(op)

    def add(
        self,
        name: str,
        params: Mapping[str, Any],
        final: Measurement | None,
        request_id: str = "",
    ) -> Trial:
        """Queues a configuration to try next, or records a known result. A repeated
        `request_id` answers the trial its first request made.

        Args:
            params: the configuration, validated against the study's space.
            final: its known result (None: queue it as REQUESTED).
            request_id: the client's id of the request ("" for none).

        Raises:
            InvalidArgument: parameters outside the space, or a bad result or request id.
            StudyNotFound: no such study.
            StudyFinished: the study is COMPLETED.
            RequestIdReused: the request id made a trial with other parameters or result.
        """
        if final is not None:
            check_final(final)
        check_request_id(request_id)

        def op(store: StudyStore) -> Trial:
            study = self.access.study(store, name)
            spec = self.access.spec(study)
            if study.state is StudyState.COMPLETED:
                raise StudyFinished(
                    f"study {name!r} is completed (its trial budget is used): it takes no new "
                    "trials; create another study to go on"
                )
            valid = spec.space.validate(params)
            now = self.access.clock()
            if final is None:
                new = lifecycle.new_trial(valid, TrialSource.USER, now, request_id=request_id)
            else:
                new = lifecycle.recorded(valid, spec, final, now, request_id)
            store.lock_study(study)
            if request_id:
                earlier = store.trials(study, request_id=request_id)
                if earlier:
                    if not lifecycle.same_request(earlier[0], valid, final):
                        before = dict(earlier[0].parameters)
                        changed = sorted(
                            k for k in before.keys() | valid.keys() if before.get(k) != valid.get(k)
                        )
                        differs = (
                            f"other values of {', '.join(changed)}"
                            if changed
                            else "the same parameters but another result"
                        )
                        raise RequestIdReused(
                            f"request_id {shown(request_id)} already added trial "
                            f"{earlier[0].id} with {differs}; use a new id"
                        )
                    return earlier[0]
            return store.add_trials(study, [new])[0]

        return self.storage.run(op)

    def get(self, name: str, trial_id: int) -> Trial:
        """The trial with its reports (StudyNotFound, TrialNotFound when absent)."""

        def op(store: StudyStore) -> Trial:
            study, _, trial, _ = self.access.touch_trial(store, name, trial_id, for_update=False)
            reports = store.measurements(study, [trial_id]).get(trial_id, [])
            return trial.evolve(measurements=reports)

        return self.access.read(op)

    def page(
        self,
        name: str,
        states: Sequence[TrialState],
        size: int,
        after_id: int,
        with_measurements: bool = True,
    ) -> tuple[list[Trial], int | None]:
        """Up to `size` trials after id `after_id`, in `states` (all when empty), with
        their reports unless `with_measurements` is False; and the last id listed when
        there are more (None: that was all)."""

        def op(store: StudyStore) -> tuple[list[Trial], int | None]:
            study, _, _ = self.access.touch_study(store, name)
            found = store.trials(study, states=states, after_id=after_id, limit=size + 1)
            more = len(found) > size
            found = found[:size]
            if with_measurements:
                reports = store.measurements(study, [t.id for t in found])
                found = [t.evolve(measurements=reports.get(t.id, [])) for t in found]
            return found, (found[-1].id if more and found else None)

        return self.access.read(op)

    def optimal(self, name: str, count: int) -> list[Trial]:
        """The `count` best trials (one metric; 0 means 1) or the Pareto front (several).

        Raises:
            InvalidArgument: `count` outside 0..MAX_PAGE_SIZE.
            StudyNotFound: no such study.
        """
        check_count("count", count, MAX_PAGE_SIZE)

        def op(store: StudyStore) -> list[Trial]:
            study = self.access.study(store, name)
            spec = self.access.spec(study)
            # Ranked on the final metrics alone (one metric: in the database); whole
            # trials are loaded only for the winners.
            if len(spec.metrics) > 1:
                results = store.final_results(study, RESULT_STATES)
                best = pareto_front(
                    spec, [Observation(tid, {}, state, fm) for tid, state, fm in results]
                )
            else:
                metric = spec.primary_metric
                best = store.best_by_metric(
                    study,
                    RESULT_STATES,
                    metric.name,
                    maximize=metric.goal is Goal.MAXIMIZE,
                    count=count or 1,
                )
            found = {t.id: t for t in store.trials(study, ids=best)}
            return [found[tid] for tid in best]

        return self.access.read(op)
