"""The gRPC servicer: protobuf in, one awaited service call, protobuf out; domain errors
become status codes by the table below."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from tunewire.server.api import convert, tokens
from tunewire.server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
    TunewireError,
)
from tunewire.server.domain.limits import MAX_PAGE_BYTES, MAX_SPEC_BYTES, check_page_size
from tunewire.server.domain.study import StudyState
from tunewire.server.service.tuning import TuningService
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

log = logging.getLogger(__name__)
Request = TypeVar("Request")
Response = TypeVar("Response")

# Each domain error category is one status code; named errors inherit their category's.
STATUS_OF: dict[type[TunewireError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(error: TunewireError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return grpc.StatusCode.INTERNAL


# Longest status message sent: messages quote bounded input, this is a last guard.
MAX_MESSAGE = 2000


class Undecodable:
    """A request whose bytes are not a valid message of the RPC's request type."""

    def __init__(self, kind: str, error: Exception) -> None:
        self.kind = kind
        self.error = error

    @property
    def message(self) -> str:
        """The INVALID_ARGUMENT message: the expected type, not the decoder's internals."""
        return f"the request is not a valid {self.kind} message"


def lenient(message_type: Any) -> Callable[[bytes], Any]:
    """The request's deserializer, handing a decode failure to the handler (which answers
    INVALID_ARGUMENT) instead of letting gRPC answer UNKNOWN with its internals."""

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_type.DESCRIPTOR.full_name, exc)

    return parse


def rpc(
    method: Callable[[TuningServicer, Request], Awaitable[Response]],
) -> Callable[[TuningServicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]:
    """A servicer method as a gRPC handler: domain errors become their status code, and
    anything else INTERNAL with the details in the server log only."""

    @functools.wraps(method)
    async def handler(
        self: TuningServicer, request: Request, context: grpc.aio.ServicerContext
    ) -> Response:
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return await method(self, request)
        except TunewireError as exc:
            await context.abort(status_of(exc), str(exc)[:MAX_MESSAGE])
        except Exception:
            log.exception("internal error in %s", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}; see server log"
            )
        raise AssertionError("unreachable: abort raises")

    return handler


def within_page_bytes(messages: Sequence[Message]) -> int:
    """How many of a page's first `messages` fit in MAX_PAGE_BYTES (at least one): the
    rest go to the next page, so that an answer stays within a client's receive limit."""
    total = 0
    for count, message in enumerate(messages):
        total += message.ByteSize() + 8  # the field's tag and length
        if count and total > MAX_PAGE_BYTES:
            return count
    return len(messages)


class TuningServicer(api_grpc.TuningServiceServicer):
    """One method per RPC."""

    def __init__(self, service: TuningService) -> None:
        self.service = service

    @rpc
    async def CreateStudy(self, request: api.CreateStudyRequest) -> api.CreateStudyResponse:
        size = request.spec.ByteSize()
        if size > MAX_SPEC_BYTES:
            raise InvalidArgument(
                f"the spec is {size:,} bytes; at most {MAX_SPEC_BYTES:,} (fewer or shorter "
                "categorical values, or fewer parameters)"
            )
        spec = convert.spec_from_pb(request.spec)
        convert.check_round_trip(spec)
        study, created = await self.service.create_study(request.name, spec)
        return api.CreateStudyResponse(study=convert.study_to_pb(study), created=created)

    @rpc
    async def GetStudy(self, request: api.GetStudyRequest) -> api.GetStudyResponse:
        study = await self.service.get_study(request.name)
        return api.GetStudyResponse(study=convert.study_to_pb(study))

    @rpc
    async def ListStudies(self, request: api.ListStudiesRequest) -> api.ListStudiesResponse:
        size = check_page_size(request.page_size)
        after = tokens.from_page_token(request.page_token)
        studies, last = await self.service.list_studies(size, after)
        messages = [convert.study_to_pb(s) for s in studies]
        kept = within_page_bytes(messages)
        if kept < len(messages):
            last = studies[kept - 1].name
        return api.ListStudiesResponse(
            studies=messages[:kept], next_page_token=tokens.page_token(last)
        )

    @rpc
    async def DeleteStudy(self, request: api.DeleteStudyRequest) -> api.DeleteStudyResponse:
        await self.service.delete_study(request.name)
        return api.DeleteStudyResponse()

    @rpc
    async def StopStudy(self, request: api.StopStudyRequest) -> api.StopStudyResponse:
        study = await self.service.set_study_state(request.name, StudyState.STOPPED)
        return api.StopStudyResponse(study=convert.study_to_pb(study))

    @rpc
    async def ResumeStudy(self, request: api.ResumeStudyRequest) -> api.ResumeStudyResponse:
        study = await self.service.set_study_state(request.name, StudyState.ACTIVE)
        return api.ResumeStudyResponse(study=convert.study_to_pb(study))

    @rpc
    async def SuggestTrials(self, request: api.SuggestTrialsRequest) -> api.SuggestTrialsResponse:
        result = await self.service.suggest_trials(
            request.study_name, request.count, request.worker_id
        )
        return api.SuggestTrialsResponse(
            trials=[convert.trial_to_pb(t) for t in result.trials],
            study_done=result.study_done,
            retry_after_seconds=result.retry_after_seconds,
        )

    @rpc
    async def ReportMeasurement(
        self, request: api.ReportMeasurementRequest
    ) -> api.ReportMeasurementResponse:
        if not request.HasField("measurement"):
            raise InvalidArgument("measurement is required (step and metrics)")
        decision, _ = await self.service.report(
            request.study_name,
            request.trial_id,
            request.worker_id,
            convert.measurement_from_pb(request.measurement),
            last_step=request.last_step,
        )
        return api.ReportMeasurementResponse(
            should_stop=decision is not None, stop_decision=convert.stop_to_pb(decision)
        )

    @rpc
    async def Heartbeat(self, request: api.HeartbeatRequest) -> api.HeartbeatResponse:
        should_stop, trial = await self.service.heartbeat(
            request.study_name, request.trial_id, request.worker_id
        )
        return api.HeartbeatResponse(should_stop=should_stop, trial=convert.trial_to_pb(trial))

    @rpc
    async def CompleteTrial(self, request: api.CompleteTrialRequest) -> api.CompleteTrialResponse:
        trial = await self.service.complete_trial(
            request.study_name,
            request.trial_id,
            request.worker_id,
            convert.final_measurement_from(request),
            request.infeasible_reason,
        )
        return api.CompleteTrialResponse(trial=convert.trial_to_pb(trial))

    @rpc
    async def FailTrial(self, request: api.FailTrialRequest) -> api.FailTrialResponse:
        trial = await self.service.fail_trial(
            request.study_name, request.trial_id, request.worker_id, request.reason
        )
        return api.FailTrialResponse(trial=convert.trial_to_pb(trial))

    @rpc
    async def ReleaseTrial(self, request: api.ReleaseTrialRequest) -> api.ReleaseTrialResponse:
        trial = await self.service.release_trial(
            request.study_name, request.trial_id, request.worker_id
        )
        return api.ReleaseTrialResponse(trial=convert.trial_to_pb(trial))

    @rpc
    async def AddTrial(self, request: api.AddTrialRequest) -> api.AddTrialResponse:
        trial = await self.service.add_trial(
            request.study_name,
            convert.params_from_pb(request.parameters),
            convert.final_measurement_from(request),
            request.request_id,
        )
        return api.AddTrialResponse(trial=convert.trial_to_pb(trial))

    @rpc
    async def GetTrial(self, request: api.GetTrialRequest) -> api.GetTrialResponse:
        trial = await self.service.get_trial(request.study_name, request.trial_id)
        return api.GetTrialResponse(trial=convert.trial_to_pb(trial))

    @rpc
    async def ListTrials(self, request: api.ListTrialsRequest) -> api.ListTrialsResponse:
        states = convert.trial_states_from_pb(request.states)
        size = check_page_size(request.page_size)
        after = tokens.from_trial_page_token(request.page_token)
        trials, last = await self.service.list_trials(
            request.study_name,
            states,
            size,
            after,
            with_measurements=not request.omit_measurements,
        )
        messages = [convert.trial_to_pb(t) for t in trials]
        kept = within_page_bytes(messages)
        if kept < len(messages):
            last = trials[kept - 1].id
        return api.ListTrialsResponse(
            trials=messages[:kept],
            next_page_token=tokens.page_token(None if last is None else str(last)),
        )

    @rpc
    async def ListOptimalTrials(
        self, request: api.ListOptimalTrialsRequest
    ) -> api.ListOptimalTrialsResponse:
        trials = await self.service.optimal_trials(request.study_name, request.count)
        return api.ListOptimalTrialsResponse(trials=[convert.trial_to_pb(t) for t in trials])

    @rpc
    async def ListStudyChanges(
        self, request: api.ListStudyChangesRequest
    ) -> api.ListStudyChangesResponse:
        cursor = tokens.from_change_cursor(request.cursor)
        size = check_page_size(request.page_size)
        changes = await self.service.study_changes(request.study_name, cursor, size)
        return api.ListStudyChangesResponse(
            study=convert.study_to_pb(changes.study),
            trials=[convert.trial_to_pb(t) for t in changes.trials],
            curves=[convert.curve_to_pb(c) for c in changes.curves],
            next_cursor=tokens.change_cursor(changes.next_cursor),
            more=changes.more,
        )


def add_to_server(servicer: TuningServicer, server: grpc.aio.Server) -> None:
    """Registers the servicer's RPCs (as the generated `add_TuningServiceServicer_to_server`
    does) with request decoding that turns a malformed message into INVALID_ARGUMENT."""
    service = api.DESCRIPTOR.services_by_name["TuningService"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=lenient(getattr(api, method.input_type.name)),
            response_serializer=getattr(api, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
