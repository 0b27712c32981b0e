"""The gRPC servicer: protobuf in, one domain call, protobuf out; domain errors to codes.

The server is a grpc.aio server. Calls that touch a single trial or study row run on the
event loop itself when the storage is SQLite: one writer at a time, a transaction of a
few tenths of a millisecond, and no thread hand-offs around the writer lock (the GIL
passes between threads at every driver call otherwise, which bounded the threaded
server). Everything else, and every call on PostgreSQL (network round trips), runs in a
thread pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc

from tunewire.server import convert
from tunewire.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
    TunewireError,
)
from tunewire.server.service import (
    SUGGEST_STRIPES,
    SuggestResult,
    TuningService,
    check_suggest_args,
    suggest_stripe,
)
from tunewire.server.study import StudyState
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

log = logging.getLogger(__name__)

STATUS_OF: dict[type[TunewireError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
}


class TuningServicer:
    """One method per RPC: protobuf in, one domain call, protobuf out. Domain errors are
    raised as they are; AsyncTuningServicer turns them into status codes."""

    def __init__(self, service: TuningService) -> None:
        self.service = service

    def CreateStudy(
        self, request: api.CreateStudyRequest, context: grpc.ServicerContext
    ) -> api.CreateStudyResponse:
        spec = convert.spec_from_pb(request.spec)
        study, created = self.service.create_study(request.name, spec)
        return api.CreateStudyResponse(study=convert.study_to_pb(study), created=created)

    def GetStudy(
        self, request: api.GetStudyRequest, context: grpc.ServicerContext
    ) -> api.GetStudyResponse:
        return api.GetStudyResponse(study=convert.study_to_pb(self.service.get_study(request.name)))

    def ListStudies(
        self, request: api.ListStudiesRequest, context: grpc.ServicerContext
    ) -> api.ListStudiesResponse:
        studies, token = self.service.list_studies(request.page_size, request.page_token)
        return api.ListStudiesResponse(
            studies=[convert.study_to_pb(s) for s in studies], next_page_token=token
        )

    def DeleteStudy(
        self, request: api.DeleteStudyRequest, context: grpc.ServicerContext
    ) -> api.DeleteStudyResponse:
        self.service.delete_study(request.name)
        return api.DeleteStudyResponse()

    def StopStudy(
        self, request: api.StopStudyRequest, context: grpc.ServicerContext
    ) -> api.StopStudyResponse:
        study = self.service.set_study_state(request.name, StudyState.STOPPED)
        return api.StopStudyResponse(study=convert.study_to_pb(study))

    def ResumeStudy(
        self, request: api.ResumeStudyRequest, context: grpc.ServicerContext
    ) -> api.ResumeStudyResponse:
        study = self.service.set_study_state(request.name, StudyState.ACTIVE)
        return api.ResumeStudyResponse(study=convert.study_to_pb(study))

    def SuggestTrials(
        self, request: api.SuggestTrialsRequest, context: grpc.ServicerContext
    ) -> api.SuggestTrialsResponse:
        result = self.service.suggest_trials(request.study_name, request.count, request.worker_id)
        return self.suggest_response(result)

    @staticmethod
    def suggest_response(result: SuggestResult) -> api.SuggestTrialsResponse:
        return api.SuggestTrialsResponse(
            trials=[convert.trial_to_pb(t) for t in result.trials],
            study_done=result.study_done,
            retry_after_seconds=result.retry_after_seconds,
        )

    def ReportMeasurement(
        self, request: api.ReportMeasurementRequest, context: grpc.ServicerContext
    ) -> api.ReportMeasurementResponse:
        if not request.HasField("measurement"):
            raise InvalidArgument("measurement is required (step and metrics)")
        decision, _ = self.service.report(
            request.study_name,
            request.trial_id,
            request.worker_id,
            convert.measurement_from_pb(request.measurement),
        )
        return api.ReportMeasurementResponse(
            should_stop=decision is not None, stop_decision=convert.stop_to_pb(decision)
        )

    def Heartbeat(
        self, request: api.HeartbeatRequest, context: grpc.ServicerContext
    ) -> api.HeartbeatResponse:
        should_stop, trial = self.service.heartbeat(
            request.study_name, request.trial_id, request.worker_id
        )
        return api.HeartbeatResponse(should_stop=should_stop, trial=convert.trial_to_pb(trial))

    def CompleteTrial(
        self, request: api.CompleteTrialRequest, context: grpc.ServicerContext
    ) -> api.CompleteTrialResponse:
        final = convert.final_metrics_from(request)
        trial = self.service.complete_trial(
            request.study_name,
            request.trial_id,
            request.worker_id,
            final,
            request.infeasible_reason,
        )
        return api.CompleteTrialResponse(trial=convert.trial_to_pb(trial))

    def FailTrial(
        self, request: api.FailTrialRequest, context: grpc.ServicerContext
    ) -> api.FailTrialResponse:
        trial = self.service.fail_trial(
            request.study_name, request.trial_id, request.worker_id, request.reason
        )
        return api.FailTrialResponse(trial=convert.trial_to_pb(trial))

    def ReleaseTrial(
        self, request: api.ReleaseTrialRequest, context: grpc.ServicerContext
    ) -> api.ReleaseTrialResponse:
        trial = self.service.release_trial(request.study_name, request.trial_id, request.worker_id)
        return api.ReleaseTrialResponse(trial=convert.trial_to_pb(trial))

    def AddTrial(
        self, request: api.AddTrialRequest, context: grpc.ServicerContext
    ) -> api.AddTrialResponse:
        final = convert.final_metrics_from(request)
        trial = self.service.add_trial(
            request.study_name, convert.params_from_pb(request.parameters), final
        )
        return api.AddTrialResponse(trial=convert.trial_to_pb(trial))

    def GetTrial(
        self, request: api.GetTrialRequest, context: grpc.ServicerContext
    ) -> api.GetTrialResponse:
        trial = self.service.get_trial(request.study_name, request.trial_id)
        return api.GetTrialResponse(trial=convert.trial_to_pb(trial))

    def ListTrials(
        self, request: api.ListTrialsRequest, context: grpc.ServicerContext
    ) -> api.ListTrialsResponse:
        states = []
        for s in request.states:
            if s not in convert.TRIAL_STATES:
                raise InvalidArgument(f"unknown trial state {s} in the filter")
            states.append(convert.TRIAL_STATES[s])
        trials, token = self.service.list_trials(
            request.study_name,
            states,
            request.page_size,
            request.page_token,
            with_measurements=not request.omit_measurements,
        )
        return api.ListTrialsResponse(
            trials=[convert.trial_to_pb(t) for t in trials], next_page_token=token
        )

    def ListOptimalTrials(
        self, request: api.ListOptimalTrialsRequest, context: grpc.ServicerContext
    ) -> api.ListOptimalTrialsResponse:
        trials = self.service.optimal_trials(request.study_name, request.count)
        return api.ListOptimalTrialsResponse(trials=[convert.trial_to_pb(t) for t in trials])


# Calls cheap enough to run on the event loop with SQLite: one row lookup and a write.
INLINE_ON_SQLITE = frozenset(
    {
        "ReportMeasurement",
        "Heartbeat",
        "CompleteTrial",
        "FailTrial",
        "ReleaseTrial",
        "GetTrial",
        "GetStudy",
    }
)
RPC_NAMES = tuple(m.name for m in api.DESCRIPTOR.services_by_name["TuningService"].methods)


def _async_rpc(name: str, where: str) -> Callable[..., Any]:
    """An async handler for RPC `name`: TuningServicer's method run in the thread pool
    (`where="pool"`) or on the loop (`"loop"`, unless `_offload` says this request is
    too heavy for it), or the servicer's own coroutine (`"async"`); domain errors become
    status codes."""

    async def call(
        self: AsyncTuningServicer, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        try:
            if where == "async":
                return await getattr(self, f"_{name}")(request)
            method = getattr(self.servicer, name)
            if where == "loop" and not self._offload(name, request):
                return method(request, context)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, method, request, context)
        except TunewireError as exc:
            await context.abort(STATUS_OF.get(type(exc), grpc.StatusCode.INTERNAL), str(exc))
        except Exception:
            log.exception("internal error in %s", name)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error in {name}; see server log"
            )

    call.__name__ = call.__qualname__ = name
    return call


class AsyncTuningServicer(api_grpc.TuningServiceServicer):
    """TuningServicer on grpc.aio: maps domain errors to status codes and decides, per
    call, between the event loop (cheap calls on SQLite) and the thread pool."""

    def __init__(self, service: TuningService, executor: Executor, *, inline_ok: bool) -> None:
        self.servicer = TuningServicer(service)
        self.service = service
        self.executor = executor
        self._suggest_locks = [asyncio.Lock() for _ in range(SUGGEST_STRIPES)]
        for name in RPC_NAMES:
            where = "loop" if inline_ok and name in INLINE_ON_SQLITE else "pool"
            if inline_ok and name == "SuggestTrials":
                where = "async"
            setattr(self, name, _async_rpc(name, where).__get__(self))

    def _offload(self, name: str, request: Any) -> bool:
        """Whether a call that usually runs on the loop goes to the thread pool: a report
        on a study whose early-stopping rule reads the other trials (in a large study,
        milliseconds of SQL that the loop should not wait for)."""
        return name == "ReportMeasurement" and self.service.reads_peers(request.study_name)

    async def _SuggestTrials(self, request: api.SuggestTrialsRequest) -> api.SuggestTrialsResponse:
        return await self._suggest(request.study_name, request.count, request.worker_id)

    async def _suggest(self, name: str, count: int, worker_id: str) -> api.SuggestTrialsResponse:
        """TuningService.suggest_trials for SQLite, driven from the event loop: its two
        transactions run here (a few tenths of a millisecond each), the algorithm in the
        thread pool; suggestions for one study are serialised by an asyncio lock."""
        count = check_suggest_args(count, worker_id)
        loop = asyncio.get_running_loop()
        async with self._suggest_locks[suggest_stripe(name)]:
            steps = self.service.suggest_steps(name, count, worker_id)
            try:
                work = next(steps)
                while True:
                    work = steps.send(await loop.run_in_executor(self.executor, work))
            except StopIteration as done:
                return TuningServicer.suggest_response(done.value)
