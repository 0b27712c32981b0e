"""Every bad request gets a precise status and a message saying what to fix, and changes
nothing. Raw gRPC stubs, so the client library's own checks do not hide the server's."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import SIMPLE_SPEC
from tunewire.client.spec import spec_from_dict, value_to_pb
from tunewire.server.app import RunningServer
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(sqlite_server: RunningServer) -> Iterator[api_grpc.TuningServiceStub]:
    channel = grpc.insecure_channel(sqlite_server.target)
    yield api_grpc.TuningServiceStub(channel)
    channel.close()


def expect(code: grpc.StatusCode, call: object, *needles: str) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    assert err.value.code() == code, err.value.details()
    for needle in needles:
        assert needle in err.value.details(), err.value.details()
    return err.value.details()


def with_params(*params: dict) -> pb.StudySpec:
    s = copy.deepcopy(SIMPLE_SPEC)
    s["parameters"] = list(params)
    return spec_from_dict(s)


BAD_SPECS = [
    ([{"name": "x", "type": "float", "min": 1.0, "max": 1.0}], "min (1) must be less than max (1)"),
    (
        [{"name": "x", "type": "float", "min": 0.0, "max": 1.0, "scale": "log"}],
        "log scale needs min > 0",
    ),
    ([{"name": "n", "type": "int", "min": 0, "max": 8, "scale": "log"}], "log scale needs min > 0"),
    ([{"name": "c", "type": "categorical", "values": []}], "at least one value"),
    ([{"name": "c", "type": "categorical", "values": ["a", "a"]}], "duplicate values"),
    ([{"name": "c", "type": "categorical", "values": ["a", ""]}], "1-256 characters"),
    ([{"name": "d", "type": "discrete", "values": [1, 1]}], "duplicate values"),
    (
        [
            {"name": "x", "type": "float", "min": 0, "max": 1},
            {"name": "x", "type": "float", "min": 0, "max": 2},
        ],
        "duplicate parameter name 'x'",
    ),
    (
        [
            {
                "name": "x",
                "type": "float",
                "min": 0,
                "max": 1,
                "condition": {"parent": "nope", "min": 1},
            }
        ],
        "unknown parent 'nope'",
    ),
    (
        [
            {
                "name": "a",
                "type": "int",
                "min": 0,
                "max": 3,
                "condition": {"parent": "b", "min": 1},
            },
            {
                "name": "b",
                "type": "int",
                "min": 0,
                "max": 3,
                "condition": {"parent": "a", "min": 1},
            },
        ],
        "cycle",
    ),
    ([{"name": "bad name!", "type": "float", "min": 0, "max": 1}], "parameter name 'bad name!'"),
    ([], "at least one parameter"),
]


@pytest.mark.parametrize("params,needle", BAD_SPECS)
def test_invalid_spec_is_rejected_and_creates_nothing(
    stub: api_grpc.TuningServiceStub, params: list, needle: str
) -> None:
    expect(
        INVALID,
        lambda: stub.CreateStudy(api.CreateStudyRequest(name="s", spec=with_params(*params))),
        needle,
    )
    expect(grpc.StatusCode.NOT_FOUND, lambda: stub.GetStudy(api.GetStudyRequest(name="s")))


def test_invalid_spec_fields(stub: api_grpc.TuningServiceStub) -> None:
    base = spec_from_dict(SIMPLE_SPEC)
    cases = []
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.algorithm = "magic"
    cases.append((s, "unknown algorithm 'magic'"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    del s.metrics[:]
    cases.append((s, "at least one metric"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.metrics[0].goal = pb.GOAL_UNSPECIFIED
    cases.append((s, "GOAL_MINIMIZE or GOAL_MAXIMIZE"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.parameters.add(name="nodomain")
    cases.append((s, "has no domain"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.early_stopping.successive_halving.reduction_factor = 0.5
    cases.append((s, "reduction_factor must be from 1.1 to 100"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.max_trials = -1
    cases.append((s, "max_trials (0 = no limit or the default) must be between 0 and"))
    s = pb.StudySpec()
    s.CopyFrom(base)
    s.lease_timeout_seconds = float("nan")
    cases.append((s, "lease_timeout_seconds"))
    for spec, needle in cases:
        request = api.CreateStudyRequest(name="s", spec=spec)
        expect(INVALID, lambda r=request: stub.CreateStudy(r), needle)
    expect(
        INVALID, lambda: stub.CreateStudy(api.CreateStudyRequest(name="", spec=base)), "study name"
    )


def test_unknown_study_and_trial(stub: api_grpc.TuningServiceStub) -> None:
    expect(
        grpc.StatusCode.NOT_FOUND,
        lambda: stub.GetStudy(api.GetStudyRequest(name="nope")),
        "'nope' not found",
    )
    expect(
        grpc.StatusCode.NOT_FOUND,
        lambda: stub.SuggestTrials(api.SuggestTrialsRequest(study_name="nope", worker_id="w")),
    )
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec_from_dict(SIMPLE_SPEC)))
    expect(
        grpc.StatusCode.NOT_FOUND,
        lambda: stub.GetTrial(api.GetTrialRequest(study_name="s", trial_id=42)),
        "trial 42 not found",
    )
    expect(
        grpc.StatusCode.NOT_FOUND,
        lambda: stub.ReportMeasurement(
            api.ReportMeasurementRequest(
                study_name="s",
                trial_id=42,
                worker_id="w",
                measurement=pb.Measurement(step=0, metrics={"loss": 1.0}),
            )
        ),
    )


def test_bad_reports_change_nothing(
    stub: api_grpc.TuningServiceStub, sqlite_server: RunningServer
) -> None:
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec_from_dict(SIMPLE_SPEC)))
    trial = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s", worker_id="w")).trials[0]

    def report(metrics: dict, step: int = 0, worker: str = "w") -> object:
        return lambda: stub.ReportMeasurement(
            api.ReportMeasurementRequest(
                study_name="s",
                trial_id=trial.id,
                worker_id=worker,
                measurement=pb.Measurement(step=step, metrics=metrics),
            )
        )

    expect(INVALID, report({"loss": float("nan")}), "not finite")
    expect(INVALID, report({"loss": float("inf")}), "not finite")
    expect(INVALID, report({}), "no metrics")
    expect(INVALID, report({"other": 1.0}), "none of the study's metrics ['loss']")
    expect(INVALID, report({"loss": 1.0}, step=-1), "step must be between 0 and")
    expect(INVALID, report({"loss": 1.0}, worker=""), "worker_id is required")
    expect(
        INVALID,
        lambda: stub.ReportMeasurement(
            api.ReportMeasurementRequest(study_name="s", trial_id=trial.id, worker_id="w")
        ),
        "measurement is required",
    )
    got = stub.GetTrial(api.GetTrialRequest(study_name="s", trial_id=trial.id)).trial
    assert len(got.measurements) == 0 and got.state == pb.TRIAL_STATE_ACTIVE

    def complete(metrics: dict) -> object:
        return lambda: stub.CompleteTrial(
            api.CompleteTrialRequest(
                study_name="s",
                trial_id=trial.id,
                worker_id="w",
                final_measurement=pb.Measurement(metrics=metrics),
            )
        )

    expect(INVALID, complete({"acc": 1.0}), "lacks the study's metrics ['loss']")
    expect(
        INVALID,
        lambda: stub.CompleteTrial(
            api.CompleteTrialRequest(study_name="s", trial_id=trial.id, worker_id="w")
        ),
        "has no reports",
    )
    expect(INVALID, complete({"loss": 1.0, "acc": float("nan")}), "not finite")
    assert (
        stub.GetTrial(api.GetTrialRequest(study_name="s", trial_id=trial.id)).trial.state
        == pb.TRIAL_STATE_ACTIVE
    )


def test_bad_suggest_and_add_trial(stub: api_grpc.TuningServiceStub) -> None:
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec_from_dict(SIMPLE_SPEC)))
    expect(
        INVALID,
        lambda: stub.SuggestTrials(
            api.SuggestTrialsRequest(study_name="s", worker_id="w", count=101)
        ),
        "count must be between 1 and 100",
    )
    expect(
        INVALID,
        lambda: stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s")),
        "worker_id is required",
    )
    good = {"x": 1.0, "lr": 0.01, "layers": 0, "opt": "sgd", "batch": 16}

    def add(params: dict) -> object:
        return lambda: stub.AddTrial(
            api.AddTrialRequest(
                study_name="s", parameters={k: value_to_pb(v) for k, v in params.items()}
            )
        )

    expect(INVALID, add(dict(good, x=11.0)), "parameter 'x': 11.0 is outside [-5.0, 10.0]")
    expect(INVALID, add(dict(good, units_1=32)), "parameter 'units_1' is inactive")
    expect(INVALID, add(dict(good, layers=2)), "parameter 'units_1' is missing")
    expect(INVALID, add(dict(good, opt="rmsprop")), "'rmsprop' is not one of ['sgd', 'adam']")
    expect(INVALID, add(dict(good, bogus=1)), "unknown parameters ['bogus']")
    expect(INVALID, add(dict(good, batch=20)), "20 is not one of")
    expect(INVALID, add(dict(good, layers=1.5)), "is an integer")
    assert (
        stub.AddTrial(
            api.AddTrialRequest(
                study_name="s", parameters={k: value_to_pb(v) for k, v in good.items()}
            )
        ).trial.id
        == 1
    )


def test_oversized_request_is_refused(stub: api_grpc.TuningServiceStub) -> None:
    spec = spec_from_dict(SIMPLE_SPEC)
    spec.parameters[4].categorical.values.extend(f"value-{i:07d}" * 8 for i in range(60_000))
    expect(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: stub.CreateStudy(api.CreateStudyRequest(name="big", spec=spec)),
    )
    expect(grpc.StatusCode.NOT_FOUND, lambda: stub.GetStudy(api.GetStudyRequest(name="big")))
