from tunewire.v1 import study_pb2 as _study_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateStudyRequest(_message.Message):
    __slots__ = ("name", "spec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _study_pb2.StudySpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_study_pb2.StudySpec, _Mapping]] = ...) -> None: ...

class CreateStudyResponse(_message.Message):
    __slots__ = ("study", "created")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    study: _study_pb2.Study
    created: bool
    def __init__(self, study: _Optional[_Union[_study_pb2.Study, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _study_pb2.Study
    def __init__(self, study: _Optional[_Union[_study_pb2.Study, _Mapping]] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies", "next_page_token")
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[_study_pb2.Study]
    next_page_token: str
    def __init__(self, studies: _Optional[_Iterable[_Union[_study_pb2.Study, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteStudyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteStudyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopStudyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _study_pb2.Study
    def __init__(self, study: _Optional[_Union[_study_pb2.Study, _Mapping]] = ...) -> None: ...

class ResumeStudyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: _study_pb2.Study
    def __init__(self, study: _Optional[_Union[_study_pb2.Study, _Mapping]] = ...) -> None: ...

class SuggestTrialsRequest(_message.Message):
    __slots__ = ("study_name", "count", "worker_id")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    count: int
    worker_id: str
    def __init__(self, study_name: _Optional[str] = ..., count: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class SuggestTrialsResponse(_message.Message):
    __slots__ = ("trials", "study_done", "retry_after_seconds")
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    STUDY_DONE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[_study_pb2.Trial]
    study_done: bool
    retry_after_seconds: float
    def __init__(self, trials: _Optional[_Iterable[_Union[_study_pb2.Trial, _Mapping]]] = ..., study_done: _Optional[bool] = ..., retry_after_seconds: _Optional[float] = ...) -> None: ...

class ReportMeasurementRequest(_message.Message):
    __slots__ = ("study_name", "trial_id", "worker_id", "measurement", "last_step")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    worker_id: str
    measurement: _study_pb2.Measurement
    last_step: bool
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ..., worker_id: _Optional[str] = ..., measurement: _Optional[_Union[_study_pb2.Measurement, _Mapping]] = ..., last_step: _Optional[bool] = ...) -> None: ...

class ReportMeasurementResponse(_message.Message):
    __slots__ = ("should_stop", "stop_decision")
    SHOULD_STOP_FIELD_NUMBER: _ClassVar[int]
    STOP_DECISION_FIELD_NUMBER: _ClassVar[int]
    should_stop: bool
    stop_decision: _study_pb2.StopDecision
    def __init__(self, should_stop: _Optional[bool] = ..., stop_decision: _Optional[_Union[_study_pb2.StopDecision, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("study_name", "trial_id", "worker_id")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    worker_id: str
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("should_stop", "trial")
    SHOULD_STOP_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    should_stop: bool
    trial: _study_pb2.Trial
    def __init__(self, should_stop: _Optional[bool] = ..., trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class CompleteTrialRequest(_message.Message):
    __slots__ = ("study_name", "trial_id", "worker_id", "final_measurement", "infeasible_reason")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FINAL_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_REASON_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    worker_id: str
    final_measurement: _study_pb2.Measurement
    infeasible_reason: str
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ..., worker_id: _Optional[str] = ..., final_measurement: _Optional[_Union[_study_pb2.Measurement, _Mapping]] = ..., infeasible_reason: _Optional[str] = ...) -> None: ...

class CompleteTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _study_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class FailTrialRequest(_message.Message):
    __slots__ = ("study_name", "trial_id", "worker_id", "reason")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    worker_id: str
    reason: str
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ..., worker_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _study_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class ReleaseTrialRequest(_message.Message):
    __slots__ = ("study_name", "trial_id", "worker_id")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    worker_id: str
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ReleaseTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _study_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class AddTrialRequest(_message.Message):
    __slots__ = ("study_name", "parameters", "final_measurement", "request_id")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _study_pb2.ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_study_pb2.ParameterValue, _Mapping]] = ...) -> None: ...
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FINAL_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    parameters: _containers.MessageMap[str, _study_pb2.ParameterValue]
    final_measurement: _study_pb2.Measurement
    request_id: str
    def __init__(self, study_name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _study_pb2.ParameterValue]] = ..., final_measurement: _Optional[_Union[_study_pb2.Measurement, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _study_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class GetTrialRequest(_message.Message):
    __slots__ = ("study_name", "trial_id")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    trial_id: int
    def __init__(self, study_name: _Optional[str] = ..., trial_id: _Optional[int] = ...) -> None: ...

class GetTrialResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: _study_pb2.Trial
    def __init__(self, trial: _Optional[_Union[_study_pb2.Trial, _Mapping]] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ("study_name", "states", "page_size", "page_token", "omit_measurements")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OMIT_MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    states: _containers.RepeatedScalarFieldContainer[_study_pb2.TrialState]
    page_size: int
    page_token: str
    omit_measurements: bool
    def __init__(self, study_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_study_pb2.TrialState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., omit_measurements: _Optional[bool] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ("trials", "next_page_token")
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[_study_pb2.Trial]
    next_page_token: str
    def __init__(self, trials: _Optional[_Iterable[_Union[_study_pb2.Trial, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListOptimalTrialsRequest(_message.Message):
    __slots__ = ("study_name", "count")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    count: int
    def __init__(self, study_name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListOptimalTrialsResponse(_message.Message):
    __slots__ = ("trials",)
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[_study_pb2.Trial]
    def __init__(self, trials: _Optional[_Iterable[_Union[_study_pb2.Trial, _Mapping]]] = ...) -> None: ...

class ListStudyChangesRequest(_message.Message):
    __slots__ = ("study_name", "cursor", "page_size")
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    cursor: str
    page_size: int
    def __init__(self, study_name: _Optional[str] = ..., cursor: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListStudyChangesResponse(_message.Message):
    __slots__ = ("study", "trials", "curves", "next_cursor", "more")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    study: _study_pb2.Study
    trials: _containers.RepeatedCompositeFieldContainer[_study_pb2.Trial]
    curves: _containers.RepeatedCompositeFieldContainer[_study_pb2.TrialCurve]
    next_cursor: str
    more: bool
    def __init__(self, study: _Optional[_Union[_study_pb2.Study, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[_study_pb2.Trial, _Mapping]]] = ..., curves: _Optional[_Iterable[_Union[_study_pb2.TrialCurve, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., more: _Optional[bool] = ...) -> None: ...
