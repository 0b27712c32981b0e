"""The trainer worker: asks the server for trials, trains each with the task, reports every
epoch, obeys stop decisions, and finishes the trial with its outcome.

It speaks to the server only through the public client library (`tunewire.client`), like a
third-party trainer. Outcomes: a result completes the trial; out-of-memory or a diverged
loss marks it infeasible and the worker goes on; SIGINT/SIGTERM hands it back to the server
and the worker exits cleanly; an unreachable server is retried with backoff (by the
client) for `server_wait_s` before the worker gives up with a clear message.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

import torch

from tunewire.client import Trial, TunewireClientError, TuningClient
from tunewire.client.troubleshooting import explain_failure
from tunewire.trainer.devices import (
    DeviceError,
    prepare_device,
    release_cuda_memory,
    resolve_device,
)
from tunewire.trainer.errors import (
    TaskContractError,
    TaskLoadError,
    TaskMetricError,
    TaskParameterError,
    TrialInfeasible,
    WorkerInterrupted,
)
from tunewire.trainer.progress import make_progress
from tunewire.trainer.reporter import Metrics, Reporter, TrainFunction
from tunewire.trainer.signals import SignalGuard
from tunewire.trainer.study_setup import ensure_study, why_study_ended
from tunewire.trainer.summary import (
    EXIT_CONFIG,
    EXIT_FAILURES,
    EXIT_UNREACHABLE,
    KEY_METRICS,
    TrialOutcome,
    WorkerSummary,
    format_metrics,
    format_params,
)
from tunewire.trainer.tasks import DEFAULT_TASK, load_task
from tunewire.v1.study_pb2 import GOAL_MAXIMIZE

log = logging.getLogger("tunewire.trainer")

# Codes of a server that is away (the client has already retried them with backoff).
UNREACHABLE_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
# Codes of a server-side bug; asked again a few times with backoff before giving up.
SERVER_ERROR_CODES = ("INTERNAL", "UNKNOWN")
MAX_SERVER_ERRORS = 5
# A worker retrying an unreachable server says once what to check when it has tried this
# long: a blink of the network draws no hint, a wrong address or TLS setting one at once.
HINT_AFTER_S = 1.0
# A user task that raises on this many trials in a row is broken, not unlucky.
MAX_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class WorkerSettings:
    """Everything one worker process needs; the CLI fills it from flags.

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda:N``.
        worker_id: stable id sent to the server; empty = ``host:device:pid``.
        tls: connect with TLS; `tls_ca` is the PEM file of the CA (system roots when
            None), as the client commands' --tls and --tls-ca.
        max_trials: stop after this many trials (None = until the study is done).
        create_study: create the study when missing, from `space` or the task's default
            spec (idempotent; an existing study is joined as it is).
        space: a YAML/JSON study spec file (search space, metrics, algorithm...).
        seed: seeds the data split and the network; give every worker the same one.
        threads: torch intra-op threads (default 1).
        progress: ``auto`` (a bar on a terminal), ``bar``, ``log`` or ``off``.
        server_wait_s: how long an unreachable server is retried before giving up.
    """

    server: str
    study: str
    task: str = DEFAULT_TASK
    device: str = "auto"
    worker_id: str = ""
    max_trials: int | None = None
    token: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    create_study: bool = True
    space: str | None = None
    seed: int = 0
    threads: int | None = None
    amp: bool = False
    progress: str = "auto"
    server_wait_s: float = 600.0
    rpc_timeout_s: float = 30.0


def default_worker_id(device: torch.device, index: int = 0) -> str:
    """host:device:pid — unique per process, so two workers on one host never share the
    server's lease on a trial."""
    import os

    label = f"{device.type}{device.index if device.index is not None else index}"
    return f"{socket.gethostname()}:{label}:{os.getpid()}"


class Worker:
    """One worker on one device; `run` trains trials until the study is done."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        client: TuningClient | None = None,
        index: int = 0,
    ) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.worker_id = settings.worker_id or default_worker_id(self.device, index)
        self._hint_lock = threading.Lock()  # the heartbeat thread retries too
        self._hinted = False
        self.client = client or TuningClient(
            settings.server,
            token=settings.token,
            tls=settings.tls,
            tls_ca=settings.tls_ca,
            timeout=settings.rpc_timeout_s,
            retry_timeout=settings.server_wait_s,
            on_retry=self._hint_while_retrying,
        )
        self.summary = WorkerSummary(self.worker_id, str(self.device))
        self.maximize = False

    def _hint(self, error: TunewireClientError, waited: float) -> str:
        """What the client commands would say of `error`: what to check (address, TLS, token)."""
        tls = self.settings.tls or bool(self.settings.tls_ca)
        return explain_failure(error, target=self.settings.server, tls=tls, waited=waited)

    def _hint_while_retrying(self, error: TunewireClientError, waited: float) -> None:
        """Logs once what the client commands would say about the server it cannot reach
        (address, TLS, token), while the worker goes on retrying."""
        with self._hint_lock:
            if waited < HINT_AFTER_S or self._hinted:
                return
            self._hinted = True
        hint, wait = self._hint(error, waited), self.settings.server_wait_s
        log.warning("%s\n  retrying for up to %.0f s (--server-wait)", hint, wait)

    def run(self) -> WorkerSummary:
        """Runs until the study is done, `max_trials` trials ran, a signal, or a fatal
        error; never raises for those, the summary's exit_code and message say what ended it."""
        started = time.perf_counter()
        try:
            with SignalGuard():
                self._run()
        except WorkerInterrupted as exc:
            self.summary.message = f"stopped by {exc}"
        except (TaskLoadError, TaskParameterError, TaskMetricError) as exc:
            self.summary.exit_code = EXIT_CONFIG
            self.summary.message = str(exc)
        except TunewireClientError as exc:
            if exc.code.name in UNREACHABLE_CODES:
                self.summary.exit_code = EXIT_UNREACHABLE
                self.summary.message = (
                    f"server {self.settings.server} unreachable for "
                    f"{self.settings.server_wait_s:.0f} s: {exc.details or exc.code.name}"
                )
            else:
                self.summary.exit_code = EXIT_CONFIG
                self.summary.message = f"the server refused: {self._hint(exc, waited=0)}"
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _run(self) -> None:
        settings = self.settings
        prepare_device(self.device, settings.threads)
        if settings.amp and self.device.type != "cuda":
            log.warning("--amp only applies on CUDA; training in float32 on %s", self.device)
        task = load_task(settings.task)
        ensure_study(self.client, settings.study, settings.space, settings.create_study, task)
        objective = self.client.primary_metric(settings.study)
        self.summary.objective = objective
        self.summary.maximize = self.maximize = (
            self.client.study_spec(settings.study).metrics[0].goal == GOAL_MAXIMIZE
        )
        log.info(
            "worker %s: study %r, task %s, device %s, seed %d",
            self.worker_id,
            settings.study,
            settings.task,
            self.device,
            settings.seed,
        )
        server_errors = 0
        while True:
            done_before = len(self.summary.outcomes)
            try:
                self._train_trials(task, objective)
                return
            except TunewireClientError as exc:
                if len(self.summary.outcomes) > done_before:
                    server_errors = 0
                server_errors += 1
                if exc.code.name not in SERVER_ERROR_CODES or server_errors > MAX_SERVER_ERRORS:
                    raise
                # A server bug may be transient (one failed model fit); the server hands a
                # trial this worker still held back to it when it asks again.
                delay = min(2.0**server_errors, 30.0)
                log.warning("server error (%s); asking again in %.0f s", exc, delay)
                time.sleep(delay)

    def _train_trials(self, task: TrainFunction, objective: str) -> None:
        """Trains trials until the study is done, the trial budget is spent, or the task
        keeps failing."""
        settings = self.settings
        remaining = None
        if settings.max_trials is not None:
            remaining = settings.max_trials - len(self.summary.outcomes)
        failures_in_a_row = 0
        for trial in self.client.worker_loop(settings.study, self.worker_id, max_trials=remaining):
            outcome = self.run_trial(trial, task, objective)
            failures_in_a_row = failures_in_a_row + 1 if outcome.state == "failed" else 0
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                self.summary.exit_code = EXIT_FAILURES
                self.summary.message = (
                    f"{failures_in_a_row} trials in a row failed (last: {outcome.reason}); "
                    "stopping: fix the task"
                )
                return
        if settings.max_trials is not None and len(self.summary.outcomes) >= settings.max_trials:
            self.summary.message = "done"
        else:
            self.summary.message = why_study_ended(self.client, settings.study)

    def _abandon(self, trial: Trial, refusal: TunewireClientError) -> str:
        """Before the worker exits on a refused call (a metric the study does not have, a
        bad token...), fails the trial so that it does not stay active until its lease
        expires. A server away or in error keeps the trial: a worker asking again gets it.

        Returns:
            The reason the trial was failed with; empty when the trial was kept.
        """
        if refusal.code.name in UNREACHABLE_CODES + SERVER_ERROR_CODES:
            return ""
        reason = f"the server refused a call of this trial: {refusal}"[:4000]
        try:
            trial.fail(reason)
        except TunewireClientError as exc:
            log.warning("could not fail trial %d after the refusal: %s", trial.id, exc)
            return ""
        return reason

    def _record(self, outcome: TrialOutcome, started: float) -> TrialOutcome:
        """Counts a trial this worker finished or handed back in its summary."""
        outcome.seconds = time.perf_counter() - started
        self.summary.outcomes.append(outcome)
        return outcome

    def run_trial(self, trial: Trial, task: TrainFunction, objective: str) -> TrialOutcome:
        """Trains one trial, tells the server how it ended, and counts it in the summary
        (also when it raises, unless the trial stays with the server).

        Raises:
            WorkerInterrupted: after handing the trial back.
            TaskParameterError: after failing the trial (the worker must stop).
            TunewireClientError: the server is unreachable or refused a call (the trial
                is then failed, unless the server was away or in error).
        """
        started = time.perf_counter()
        params = dict(trial.params)
        outcome = TrialOutcome(trial.id, "", params)
        progress = make_progress(self.settings.progress, trial.id, objective)

        def send(step: int, metrics: Metrics, last_step: bool) -> bool:
            elapsed = time.perf_counter() - started
            return trial.report(step, metrics, elapsed_seconds=elapsed, last_step=last_step)

        reporter = Reporter(
            device=self.device,
            seed=self.settings.seed,
            amp=self.settings.amp,
            objective=objective,
            maximize=self.maximize,
            trial_id=trial.id,
            send=send,
            progress=progress,
        )
        log.info("trial %d started: %s", trial.id, format_params(params))
        out_of_memory = False
        try:
            with trial.heartbeat():
                result = task(params, reporter)
            final = dict(result) if result is not None else reporter.last_metrics
            if not final or objective not in final:
                raise TaskContractError(
                    f"the task returned no {objective!r} (got {sorted(final or {})}) and "
                    "reported none"
                )
            record = trial.complete(final)
            outcome.state, outcome.metrics = record.state, final
        except WorkerInterrupted:
            self._close(progress)
            log.warning("interrupted: handing trial %d back to the server", trial.id)
            trial.release()
            outcome.state, outcome.reason = "released", "interrupted"
            self._record(outcome, started)
            raise
        except TaskParameterError as exc:
            self._close(progress)
            outcome.state, outcome.reason = "failed", f"bad task parameters: {exc}"
            trial.fail(outcome.reason)
            self._record(outcome, started)
            raise
        except TrialInfeasible as exc:
            outcome.state, outcome.reason = "infeasible", str(exc)
            trial.infeasible(outcome.reason)
        except torch.cuda.OutOfMemoryError as exc:
            out_of_memory = True
            outcome.state = "infeasible"
            outcome.reason = f"CUDA out of memory: {str(exc).splitlines()[0] if str(exc) else ''}"
            trial.infeasible(outcome.reason)
        except MemoryError:
            outcome.state, outcome.reason = "infeasible", "out of host memory"
            trial.infeasible(outcome.reason)
        except TunewireClientError as exc:
            self._close(progress)
            if exc.code.name != "FAILED_PRECONDITION":
                outcome.reason = self._abandon(trial, exc)
                if outcome.reason:
                    outcome.state = "failed"
                    self._record(outcome, started)
                raise
            # The lease expired and the trial went to another worker (or the study was
            # stopped): this worker's result would be refused, so it moves on.
            outcome.state, outcome.reason = "lost", exc.details
            log.warning("trial %d is no longer ours: %s", trial.id, exc.details)
        except Exception as exc:  # noqa: BLE001 - any bug in a task fails only its trial
            outcome.state = "failed"
            outcome.reason = f"{type(exc).__name__}: {exc}"
            log.error("trial %d failed:\n%s", trial.id, traceback.format_exc().rstrip())
            trial.fail(outcome.reason[:4000])
        if out_of_memory:
            # Only here, outside the except clause: until then the exception's traceback
            # keeps the task's frames, and so its tensors, alive and the cache cannot be
            # emptied (PyTorch FAQ, "My out of memory exception handler can't allocate memory").
            release_cuda_memory()
        self._record(outcome, started)
        self._close(progress)
        if outcome.metrics is not None:
            log.info(
                "trial %d %s in %.1f s: %s",
                trial.id,
                outcome.state,
                outcome.seconds,
                format_metrics(outcome.metrics, (objective, *KEY_METRICS)),
            )
        elif outcome.state != "lost":
            log.warning("trial %d %s: %s", trial.id, outcome.state, outcome.reason)
        return outcome

    @staticmethod
    def _close(progress: Any) -> None:
        if progress is not None:
            progress.close()


def run_worker(settings: WorkerSettings, index: int = 0) -> WorkerSummary:
    """Runs one worker in this process; see `Worker.run`."""
    try:
        worker = Worker(settings, index=index)
    except DeviceError as exc:
        return WorkerSummary(
            settings.worker_id or "?", settings.device, exit_code=EXIT_CONFIG, message=str(exc)
        )
    try:
        return worker.run()
    finally:
        worker.client.close()


def worker_settings_for(
    settings: WorkerSettings, device: str, index: int, count: int
) -> WorkerSettings:
    """The settings of worker `index` of `count` started by one `--devices` list."""
    worker_id = settings.worker_id
    if worker_id and count > 1:
        worker_id = f"{worker_id}:{index}"
    return replace(settings, device=device, worker_id=worker_id)
