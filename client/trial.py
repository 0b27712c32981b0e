"""A trial held by a worker: report, heartbeat, complete, fail or hand it back."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

from tunewire.client.heartbeat import Heartbeat
from tunewire.client.records import TrialRecord, params_from_pb, record_from_pb
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api


class Connection(Protocol):
    """What a trial needs of its client (a `TuningClient`)."""

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any: ...

    def primary_metric(self, study: str) -> str: ...

    def study_spec(self, study: str) -> pb.StudySpec: ...


class Trial:
    """A trial held by this worker: report, heartbeat, complete.

    As a context manager, it marks the trial FAILED if the body raises (and re-raises);
    a body that ends without finishing the trial completes it with its last report.
    """

    def __init__(self, client: Connection, study: str, worker_id: str, message: pb.Trial) -> None:
        self.client = client
        self.study = study
        self.worker_id = worker_id
        self.id = message.id
        self.params = params_from_pb(message)
        self.message = message
        self.should_stop = message.HasField("stop_decision")
        self.stop_reason = message.stop_decision.reason if self.should_stop else ""
        self.finished = False
        self._reported = False

    def __repr__(self) -> str:
        return f"Trial(study={self.study!r}, id={self.id}, params={self.params})"

    def _metrics(self, metrics: Mapping[str, float] | float) -> dict[str, float]:
        if isinstance(metrics, Mapping):
            return {k: float(v) for k, v in metrics.items()}
        return {self.client.primary_metric(self.study): float(metrics)}

    def report(
        self,
        step: int,
        metrics: Mapping[str, float] | float,
        elapsed_seconds: float = 0.0,
        *,
        last_step: bool = False,
    ) -> bool:
        """Records metrics at `step`; returns True when the server says to stop.
        `last_step`: this is the trial's last step (it ran its full length), which the
        early-stopping rules do not stop."""
        r = self.client.call(
            "ReportMeasurement",
            api.ReportMeasurementRequest(
                study_name=self.study,
                trial_id=self.id,
                worker_id=self.worker_id,
                measurement=pb.Measurement(
                    step=step, metrics=self._metrics(metrics), elapsed_seconds=elapsed_seconds
                ),
                last_step=last_step,
            ),
        )
        self._reported = True
        if r.should_stop:
            self.should_stop = True
            self.stop_reason = r.stop_decision.reason
        return bool(r.should_stop)

    def heartbeat_once(self) -> bool:
        """Renews the lease; returns True when the server has decided to stop the trial."""
        r = self.client.call(
            "Heartbeat",
            api.HeartbeatRequest(study_name=self.study, trial_id=self.id, worker_id=self.worker_id),
        )
        if r.should_stop:
            self.should_stop = True
        return bool(r.should_stop)

    def heartbeat(self, interval: float | None = None) -> Heartbeat:
        """A context manager that renews the lease in the background every `interval`
        seconds (default: a third of the study's lease timeout)."""
        if interval is None:
            lease = self.client.study_spec(self.study).lease_timeout_seconds or 600.0
            interval = max(lease / 3.0, 0.05)
        return Heartbeat(self, interval)

    def complete(self, metrics: Mapping[str, float] | float | None = None) -> TrialRecord:
        """Finishes the trial with final metrics (None: the last report's metrics)."""
        request = api.CompleteTrialRequest(
            study_name=self.study, trial_id=self.id, worker_id=self.worker_id
        )
        if metrics is not None:
            request.final_measurement.CopyFrom(pb.Measurement(metrics=self._metrics(metrics)))
        r = self.client.call("CompleteTrial", request)
        self.finished = True
        return record_from_pb(r.trial)

    def infeasible(self, reason: str) -> TrialRecord:
        """Marks the configuration infeasible (e.g. "out of memory", "NaN loss")."""
        r = self.client.call(
            "CompleteTrial",
            api.CompleteTrialRequest(
                study_name=self.study,
                trial_id=self.id,
                worker_id=self.worker_id,
                infeasible_reason=reason or "infeasible",
            ),
        )
        self.finished = True
        return record_from_pb(r.trial)

    def fail(self, reason: str) -> TrialRecord:
        r = self.client.call(
            "FailTrial",
            api.FailTrialRequest(
                study_name=self.study, trial_id=self.id, worker_id=self.worker_id, reason=reason
            ),
        )
        self.finished = True
        return record_from_pb(r.trial)

    def release(self) -> TrialRecord:
        """Hands the trial back unfinished; another worker will run it from scratch."""
        r = self.client.call(
            "ReleaseTrial",
            api.ReleaseTrialRequest(
                study_name=self.study, trial_id=self.id, worker_id=self.worker_id
            ),
        )
        self.finished = True
        return record_from_pb(r.trial)

    def __enter__(self) -> Trial:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.finished:
            return
        if exc is not None:
            if isinstance(exc, KeyboardInterrupt):
                self.release()
            else:
                self.fail(f"{exc_type.__name__ if exc_type else 'error'}: {exc}"[:4000])
            return
        if self._reported:
            self.complete()
