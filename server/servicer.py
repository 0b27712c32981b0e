"""The gRPC servicer: protobuf in, one domain call, protobuf out; domain errors to codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

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
from tunewire.server.service import TuningService
from tunewire.server.study import StudyState
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

STATUS_OF: dict[type[TunewireError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
}


def _rpc(method: F) -> F:
    """Maps domain errors to gRPC status codes; anything else is INTERNAL and logged."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except TunewireError as exc:
            context.abort(STATUS_OF.get(type(exc), grpc.StatusCode.INTERNAL), str(exc))
        except Exception:
            log.exception("internal error in %s", method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}; see server log"
            )

    return wrapper  # type: ignore[return-value]


class TuningServicer(api_grpc.TuningServiceServicer):
    def __init__(self, service: TuningService) -> None:
        self.service = service

    @_rpc
    def CreateStudy(
        self, request: api.CreateStudyRequest, context: grpc.ServicerContext
    ) -> api.CreateStudyResponse:
        spec = convert.spec_from_pb(request.spec)
        study, created = self.service.create_study(request.name, spec)
        return api.CreateStudyResponse(study=convert.study_to_pb(study), created=created)

    @_rpc
    def GetStudy(
        self, request: api.GetStudyRequest, context: grpc.ServicerContext
    ) -> api.GetStudyResponse:
        return api.GetStudyResponse(study=convert.study_to_pb(self.service.get_study(request.name)))

    @_rpc
    def ListStudies(
        self, request: api.ListStudiesRequest, context: grpc.ServicerContext
    ) -> api.ListStudiesResponse:
        studies, token = self.service.list_studies(request.page_size, request.page_token)
        return api.ListStudiesResponse(
            studies=[convert.study_to_pb(s) for s in studies], next_page_token=token
        )

    @_rpc
    def DeleteStudy(
        self, request: api.DeleteStudyRequest, context: grpc.ServicerContext
    ) -> api.DeleteStudyResponse:
        self.service.delete_study(request.name)
        return api.DeleteStudyResponse()

    @_rpc
    def StopStudy(
        self, request: api.StopStudyRequest, context: grpc.ServicerContext
    ) -> api.StopStudyResponse:
        study = self.service.set_study_state(request.name, StudyState.STOPPED)
        return api.StopStudyResponse(study=convert.study_to_pb(study))

    @_rpc
    def ResumeStudy(
        self, request: api.ResumeStudyRequest, context: grpc.ServicerContext
    ) -> api.ResumeStudyResponse:
        study = self.service.set_study_state(request.name, StudyState.ACTIVE)
        return api.ResumeStudyResponse(study=convert.study_to_pb(study))

    @_rpc
    def SuggestTrials(
        self, request: api.SuggestTrialsRequest, context: grpc.ServicerContext
    ) -> api.SuggestTrialsResponse:
        result = self.service.suggest_trials(request.study_name, request.count, request.worker_id)
        return api.SuggestTrialsResponse(
            trials=[convert.trial_to_pb(t) for t in result.trials],
            study_done=result.study_done,
            retry_after_seconds=result.retry_after_seconds,
        )

    @_rpc
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

    @_rpc
    def Heartbeat(
        self, request: api.HeartbeatRequest, context: grpc.ServicerContext
    ) -> api.HeartbeatResponse:
        should_stop, trial = self.service.heartbeat(
            request.study_name, request.trial_id, request.worker_id
        )
        return api.HeartbeatResponse(should_stop=should_stop, trial=convert.trial_to_pb(trial))

    @_rpc
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

    @_rpc
    def FailTrial(
        self, request: api.FailTrialRequest, context: grpc.ServicerContext
    ) -> api.FailTrialResponse:
        trial = self.service.fail_trial(
            request.study_name, request.trial_id, request.worker_id, request.reason
        )
        return api.FailTrialResponse(trial=convert.trial_to_pb(trial))

    @_rpc
    def ReleaseTrial(
        self, request: api.ReleaseTrialRequest, context: grpc.ServicerContext
    ) -> api.ReleaseTrialResponse:
        trial = self.service.release_trial(request.study_name, request.trial_id, request.worker_id)
        return api.ReleaseTrialResponse(trial=convert.trial_to_pb(trial))

    @_rpc
    def AddTrial(
        self, request: api.AddTrialRequest, context: grpc.ServicerContext
    ) -> api.AddTrialResponse:
        final = convert.final_metrics_from(request)
        trial = self.service.add_trial(
            request.study_name, convert.params_from_pb(request.parameters), final
        )
        return api.AddTrialResponse(trial=convert.trial_to_pb(trial))

    @_rpc
    def GetTrial(
        self, request: api.GetTrialRequest, context: grpc.ServicerContext
    ) -> api.GetTrialResponse:
        trial = self.service.get_trial(request.study_name, request.trial_id)
        return api.GetTrialResponse(trial=convert.trial_to_pb(trial))

    @_rpc
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

    @_rpc
    def ListOptimalTrials(
        self, request: api.ListOptimalTrialsRequest, context: grpc.ServicerContext
    ) -> api.ListOptimalTrialsResponse:
        trials = self.service.optimal_trials(request.study_name, request.count)
        return api.ListOptimalTrialsResponse(trials=[convert.trial_to_pb(t) for t in trials])
