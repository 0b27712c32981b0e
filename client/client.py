"""The Python client: a connection to a tunewire server and handles on trials.

client = TuningClient("localhost:50051", token="s3cret")
client.create_study("digits", {"parameters": [...], "metrics": [...]})
for trial in client.worker_loop("digits", worker_id="host:gpu0"):
    with trial, trial.heartbeat():
        for epoch in range(20):
            loss = train_one_epoch(**trial.params)
            if trial.report(epoch, {"val_loss": loss}):
                break                      # the server said stop
        trial.complete({"val_loss": best})
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tunewire.client.records import (
    STATE_VALUES,
    TrialRecord,
    TunewireClientError,
    record_from_pb,
)
from tunewire.client.spec import load_spec_file, spec_from_dict, value_to_pb
from tunewire.client.trial import Trial
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

log = logging.getLogger(__name__)
R = TypeVar("R")

# Codes worth another try: the server or network was briefly away. Every RPC of the API
# is safe to repeat (reports are idempotent by step, completion by outcome).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def default_worker_id() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class TuningClient:
    """A connection to one tunewire server (or a `dns:///` name of several replicas).

    Args:
        target: "host:port", or "dns:///name:port" to balance over replicas round-robin.
        token: bearer token, when the server requires one.
        tls: use TLS; `tls_ca` is the PEM file of the CA (system roots when empty).
        tls_server_name: overrides the name checked in the server certificate.
        timeout: deadline of each call, in seconds.
        retry_timeout: how long retryable failures (UNAVAILABLE) are retried, with backoff.
        on_retry: called before each retry with the failure and the seconds the call has
            tried (a worker says there what to check while it waits).
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
        retry_timeout: float = 120.0,
        on_retry: Callable[[TunewireClientError, float], None] | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.on_retry = on_retry
        options: list[tuple[str, Any]] = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.enable_retries", 0),
            # As much as the server sends: a trial with many reports can exceed gRPC's
            # default 4 MiB, and listings are paged to stay under it.
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls or tls_ca:
            roots = Path(tls_ca).read_bytes() if tls_ca else None
            self._channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(roots), options
            )
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = api_grpc.TuningServiceStub(self._channel)
        # Specs never change after creation, so one read per study is enough.
        self._specs: dict[str, pb.StudySpec] = {}

    # -- plumbing -----------------------------------------------------------------------
    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Calls an RPC with a deadline, retrying UNAVAILABLE/DEADLINE_EXCEEDED with backoff."""
        rpc: Callable[..., Any] = getattr(self._stub, method)
        started = time.monotonic()
        give_up = started + self.retry_timeout
        delay = 0.1
        while True:
            try:
                return rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRYABLE and time.monotonic() + delay < give_up:
                    log.warning("%s: %s, retrying in %.1fs", method, code.name, delay)
                    if self.on_retry is not None:
                        error = TunewireClientError(code, exc.details() or "", method)
                        self.on_retry(error, time.monotonic() - started)
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                raise TunewireClientError(code, exc.details() or "", method) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TuningClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Blocks until the channel connects (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    # -- studies -----------------------------------------------------------------------
    def create_study(self, name: str, spec: Mapping[str, Any] | str | Path) -> pb.Study:
        """Creates the study, or returns it when one of that name has the same spec.

        `spec` is a dict (see tunewire.client.spec) or the path of a YAML/JSON file.
        """
        raw = load_spec_file(spec) if isinstance(spec, (str, Path)) else dict(spec)
        raw.pop("name", None)
        response = self.call(
            "CreateStudy", api.CreateStudyRequest(name=name, spec=spec_from_dict(raw))
        )
        return response.study

    def get_study(self, name: str) -> pb.Study:
        return self.call("GetStudy", api.GetStudyRequest(name=name)).study

    def list_studies(self) -> list[pb.Study]:
        out: list[pb.Study] = []
        token = ""
        while True:
            page = self.call("ListStudies", api.ListStudiesRequest(page_token=token))
            out.extend(page.studies)
            token = page.next_page_token
            if not token:
                return out

    def delete_study(self, name: str) -> None:
        self.call("DeleteStudy", api.DeleteStudyRequest(name=name))

    def stop_study(self, name: str) -> pb.Study:
        return self.call("StopStudy", api.StopStudyRequest(name=name)).study

    def resume_study(self, name: str) -> pb.Study:
        return self.call("ResumeStudy", api.ResumeStudyRequest(name=name)).study

    def study_spec(self, study: str) -> pb.StudySpec:
        """The study's spec, read once per client."""
        if study not in self._specs:
            self._specs[study] = self.get_study(study).spec
        return self._specs[study]

    def primary_metric(self, study: str) -> str:
        return self.study_spec(study).metrics[0].name

    # -- trials ------------------------------------------------------------------------
    def suggest(self, study: str, worker_id: str | None = None, count: int = 1) -> list[Trial]:
        """Up to `count` trials for this worker (its held trials first). Empty when the
        study is done or at its concurrency limit; see `suggest_raw` for the reason."""
        return self.suggest_raw(study, worker_id, count)[0]

    def suggest_raw(
        self, study: str, worker_id: str | None = None, count: int = 1
    ) -> tuple[list[Trial], bool, float]:
        """(trials, study_done, retry_after_seconds)."""
        worker = worker_id or default_worker_id()
        r = self.call(
            "SuggestTrials",
            api.SuggestTrialsRequest(study_name=study, count=count, worker_id=worker),
        )
        trials = [Trial(self, study, worker, t) for t in r.trials]
        return trials, r.study_done, r.retry_after_seconds

    def worker_loop(
        self,
        study: str,
        worker_id: str | None = None,
        *,
        max_trials: int | None = None,
        poll_interval: float | None = None,
        stop_event: threading.Event | None = None,
    ) -> Iterator[Trial]:
        """Yields trials one at a time until the study is done, `max_trials` were yielded,
        or `stop_event` is set. Waits (as the server advises) when no trial is free."""
        worker = worker_id or default_worker_id()
        given = 0
        while max_trials is None or given < max_trials:
            if stop_event is not None and stop_event.is_set():
                return
            trials, done, retry_after = self.suggest_raw(study, worker, 1)
            if trials:
                given += 1
                yield trials[0]
                continue
            if done:
                return
            wait = poll_interval if poll_interval is not None else max(retry_after, 0.2)
            if stop_event is not None:
                if stop_event.wait(wait):
                    return
            else:
                time.sleep(wait)

    def add_trial(
        self,
        study: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
        *,
        request_id: str | None = None,
    ) -> TrialRecord:
        """Enqueues a configuration to try next, or records a known result (warm start).
        The call is retried on UNAVAILABLE with a request id (a new UUID unless given),
        so a retry after a lost answer never adds the trial twice."""
        request = api.AddTrialRequest(
            study_name=study,
            parameters={k: value_to_pb(v) for k, v in params.items()},
            request_id=request_id or uuid.uuid4().hex,
        )
        if metrics is not None:
            request.final_measurement.CopyFrom(pb.Measurement(metrics=dict(metrics)))
        return record_from_pb(self.call("AddTrial", request).trial)

    def get_trial(self, study: str, trial_id: int) -> TrialRecord:
        r = self.call("GetTrial", api.GetTrialRequest(study_name=study, trial_id=trial_id))
        return record_from_pb(r.trial)

    def list_trials(
        self, study: str, states: Sequence[str] = (), *, measurements: bool = True
    ) -> list[TrialRecord]:
        """All trials of the study (optionally only these states, e.g. ["completed"])."""
        unknown = [s for s in states if s not in STATE_VALUES]
        if unknown:
            raise ValueError(f"unknown trial states {unknown}; use {', '.join(STATE_VALUES)}")
        out: list[TrialRecord] = []
        token = ""
        while True:
            page = self.call(
                "ListTrials",
                api.ListTrialsRequest(
                    study_name=study,
                    states=[STATE_VALUES[s] for s in states],
                    page_token=token,
                    omit_measurements=not measurements,
                ),
            )
            out.extend(record_from_pb(t) for t in page.trials)
            token = page.next_page_token
            if not token:
                return out

    def best_trials(self, study: str, count: int = 1) -> list[TrialRecord]:
        """The best `count` trials (one objective) or the Pareto front (several)."""
        r = self.call(
            "ListOptimalTrials", api.ListOptimalTrialsRequest(study_name=study, count=count)
        )
        return [record_from_pb(t) for t in r.trials]
