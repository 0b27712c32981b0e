import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Scale(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCALE_UNSPECIFIED: _ClassVar[Scale]
    SCALE_LINEAR: _ClassVar[Scale]
    SCALE_LOG: _ClassVar[Scale]

class Goal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GOAL_UNSPECIFIED: _ClassVar[Goal]
    GOAL_MINIMIZE: _ClassVar[Goal]
    GOAL_MAXIMIZE: _ClassVar[Goal]

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDY_STATE_UNSPECIFIED: _ClassVar[StudyState]
    STUDY_STATE_ACTIVE: _ClassVar[StudyState]
    STUDY_STATE_STOPPED: _ClassVar[StudyState]
    STUDY_STATE_COMPLETED: _ClassVar[StudyState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_REQUESTED: _ClassVar[TrialState]
    TRIAL_STATE_ACTIVE: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETED: _ClassVar[TrialState]
    TRIAL_STATE_STOPPED_EARLY: _ClassVar[TrialState]
    TRIAL_STATE_INFEASIBLE: _ClassVar[TrialState]
    TRIAL_STATE_FAILED: _ClassVar[TrialState]
    TRIAL_STATE_LOST: _ClassVar[TrialState]

class TrialSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_SOURCE_UNSPECIFIED: _ClassVar[TrialSource]
    TRIAL_SOURCE_ALGORITHM: _ClassVar[TrialSource]
    TRIAL_SOURCE_USER: _ClassVar[TrialSource]
    TRIAL_SOURCE_RETRY: _ClassVar[TrialSource]
SCALE_UNSPECIFIED: Scale
SCALE_LINEAR: Scale
SCALE_LOG: Scale
GOAL_UNSPECIFIED: Goal
GOAL_MINIMIZE: Goal
GOAL_MAXIMIZE: Goal
STUDY_STATE_UNSPECIFIED: StudyState
STUDY_STATE_ACTIVE: StudyState
STUDY_STATE_STOPPED: StudyState
STUDY_STATE_COMPLETED: StudyState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_REQUESTED: TrialState
TRIAL_STATE_ACTIVE: TrialState
TRIAL_STATE_COMPLETED: TrialState
TRIAL_STATE_STOPPED_EARLY: TrialState
TRIAL_STATE_INFEASIBLE: TrialState
TRIAL_STATE_FAILED: TrialState
TRIAL_STATE_LOST: TrialState
TRIAL_SOURCE_UNSPECIFIED: TrialSource
TRIAL_SOURCE_ALGORITHM: TrialSource
TRIAL_SOURCE_USER: TrialSource
TRIAL_SOURCE_RETRY: TrialSource

class ParameterValue(_message.Message):
    __slots__ = ("number_value", "integer_value", "string_value")
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    number_value: float
    integer_value: int
    string_value: str
    def __init__(self, number_value: _Optional[float] = ..., integer_value: _Optional[int] = ..., string_value: _Optional[str] = ...) -> None: ...

class FloatRange(_message.Message):
    __slots__ = ("min_value", "max_value", "scale")
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    min_value: float
    max_value: float
    scale: Scale
    def __init__(self, min_value: _Optional[float] = ..., max_value: _Optional[float] = ..., scale: _Optional[_Union[Scale, str]] = ...) -> None: ...

class IntegerRange(_message.Message):
    __slots__ = ("min_value", "max_value", "scale")
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    min_value: int
    max_value: int
    scale: Scale
    def __init__(self, min_value: _Optional[int] = ..., max_value: _Optional[int] = ..., scale: _Optional[_Union[Scale, str]] = ...) -> None: ...

class Categorical(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Discrete(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("parent", "values", "min_value", "max_value")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    values: _containers.RepeatedCompositeFieldContainer[ParameterValue]
    min_value: float
    max_value: float
    def __init__(self, parent: _Optional[str] = ..., values: _Optional[_Iterable[_Union[ParameterValue, _Mapping]]] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ...) -> None: ...

class ParameterSpec(_message.Message):
    __slots__ = ("name", "float_range", "integer_range", "categorical", "discrete", "condition")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOAT_RANGE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_RANGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    float_range: FloatRange
    integer_range: IntegerRange
    categorical: Categorical
    discrete: Discrete
    condition: Condition
    def __init__(self, name: _Optional[str] = ..., float_range: _Optional[_Union[FloatRange, _Mapping]] = ..., integer_range: _Optional[_Union[IntegerRange, _Mapping]] = ..., categorical: _Optional[_Union[Categorical, _Mapping]] = ..., discrete: _Optional[_Union[Discrete, _Mapping]] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class MetricSpec(_message.Message):
    __slots__ = ("name", "goal")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    goal: Goal
    def __init__(self, name: _Optional[str] = ..., goal: _Optional[_Union[Goal, str]] = ...) -> None: ...

class MedianStoppingRule(_message.Message):
    __slots__ = ("min_completed_trials", "grace_period_steps", "use_step_values")
    MIN_COMPLETED_TRIALS_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_STEPS_FIELD_NUMBER: _ClassVar[int]
    USE_STEP_VALUES_FIELD_NUMBER: _ClassVar[int]
    min_completed_trials: int
    grace_period_steps: int
    use_step_values: bool
    def __init__(self, min_completed_trials: _Optional[int] = ..., grace_period_steps: _Optional[int] = ..., use_step_values: _Optional[bool] = ...) -> None: ...

class SuccessiveHalving(_message.Message):
    __slots__ = ("min_resource", "reduction_factor", "max_resource")
    MIN_RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_RESOURCE_FIELD_NUMBER: _ClassVar[int]
    min_resource: int
    reduction_factor: float
    max_resource: int
    def __init__(self, min_resource: _Optional[int] = ..., reduction_factor: _Optional[float] = ..., max_resource: _Optional[int] = ...) -> None: ...

class PatienceRule(_message.Message):
    __slots__ = ("patience_steps", "min_delta")
    PATIENCE_STEPS_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    patience_steps: int
    min_delta: float
    def __init__(self, patience_steps: _Optional[int] = ..., min_delta: _Optional[float] = ...) -> None: ...

class ThresholdRule(_message.Message):
    __slots__ = ("bound", "after_step")
    BOUND_FIELD_NUMBER: _ClassVar[int]
    AFTER_STEP_FIELD_NUMBER: _ClassVar[int]
    bound: float
    after_step: int
    def __init__(self, bound: _Optional[float] = ..., after_step: _Optional[int] = ...) -> None: ...

class EarlyStoppingPolicy(_message.Message):
    __slots__ = ("median", "successive_halving", "patience", "threshold", "max_step")
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    SUCCESSIVE_HALVING_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_FIELD_NUMBER: _ClassVar[int]
    median: MedianStoppingRule
    successive_halving: SuccessiveHalving
    patience: PatienceRule
    threshold: ThresholdRule
    max_step: int
    def __init__(self, median: _Optional[_Union[MedianStoppingRule, _Mapping]] = ..., successive_halving: _Optional[_Union[SuccessiveHalving, _Mapping]] = ..., patience: _Optional[_Union[PatienceRule, _Mapping]] = ..., threshold: _Optional[_Union[ThresholdRule, _Mapping]] = ..., max_step: _Optional[int] = ...) -> None: ...

class StudySpec(_message.Message):
    __slots__ = ("parameters", "metrics", "algorithm", "seed", "early_stopping", "max_trials", "max_concurrent_trials", "lease_timeout_seconds", "max_trial_retries", "initial_trials", "grid_resolution")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TRIALS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIAL_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_TRIALS_FIELD_NUMBER: _ClassVar[int]
    GRID_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSpec]
    algorithm: str
    seed: int
    early_stopping: EarlyStoppingPolicy
    max_trials: int
    max_concurrent_trials: int
    lease_timeout_seconds: float
    max_trial_retries: int
    initial_trials: int
    grid_resolution: int
    def __init__(self, parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., metrics: _Optional[_Iterable[_Union[MetricSpec, _Mapping]]] = ..., algorithm: _Optional[str] = ..., seed: _Optional[int] = ..., early_stopping: _Optional[_Union[EarlyStoppingPolicy, _Mapping]] = ..., max_trials: _Optional[int] = ..., max_concurrent_trials: _Optional[int] = ..., lease_timeout_seconds: _Optional[float] = ..., max_trial_retries: _Optional[int] = ..., initial_trials: _Optional[int] = ..., grid_resolution: _Optional[int] = ...) -> None: ...

class TrialCounts(_message.Message):
    __slots__ = ("requested", "active", "completed", "stopped_early", "infeasible", "failed", "lost")
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EARLY_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    requested: int
    active: int
    completed: int
    stopped_early: int
    infeasible: int
    failed: int
    lost: int
    def __init__(self, requested: _Optional[int] = ..., active: _Optional[int] = ..., completed: _Optional[int] = ..., stopped_early: _Optional[int] = ..., infeasible: _Optional[int] = ..., failed: _Optional[int] = ..., lost: _Optional[int] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("name", "spec", "state", "create_time", "trial_counts", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: StudySpec
    state: StudyState
    create_time: _timestamp_pb2.Timestamp
    trial_counts: TrialCounts
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[StudySpec, _Mapping]] = ..., state: _Optional[_Union[StudyState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trial_counts: _Optional[_Union[TrialCounts, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("step", "metrics", "elapsed_seconds", "time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    metrics: _containers.ScalarMap[str, float]
    elapsed_seconds: float
    time: _timestamp_pb2.Timestamp
    def __init__(self, step: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., elapsed_seconds: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StopDecision(_message.Message):
    __slots__ = ("step", "rule", "reason")
    STEP_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step: int
    rule: str
    reason: str
    def __init__(self, step: _Optional[int] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("study_name", "id", "parameters", "state", "worker_id", "measurements", "final_measurement", "reason", "stop_decision", "source", "retry_of", "create_time", "start_time", "end_time", "lease_expire_time")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterValue, _Mapping]] = ...) -> None: ...
    STUDY_NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    FINAL_MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STOP_DECISION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    study_name: str
    id: int
    parameters: _containers.MessageMap[str, ParameterValue]
    state: TrialState
    worker_id: str
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    final_measurement: Measurement
    reason: str
    stop_decision: StopDecision
    source: TrialSource
    retry_of: int
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    lease_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, study_name: _Optional[str] = ..., id: _Optional[int] = ..., parameters: _Optional[_Mapping[str, ParameterValue]] = ..., state: _Optional[_Union[TrialState, str]] = ..., worker_id: _Optional[str] = ..., measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ..., final_measurement: _Optional[_Union[Measurement, _Mapping]] = ..., reason: _Optional[str] = ..., stop_decision: _Optional[_Union[StopDecision, _Mapping]] = ..., source: _Optional[_Union[TrialSource, str]] = ..., retry_of: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrialCurve(_message.Message):
    __slots__ = ("trial_id", "metric", "steps", "values")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    trial_id: int
    metric: str
    steps: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, trial_id: _Optional[int] = ..., metric: _Optional[str] = ..., steps: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...
