"""What the API promises about retries and final results, through a real server: AddTrial
with a request id is safe to retry, a final measurement keeps its step and elapsed
seconds, a trial that ran its full length is not stopped, and messages a person reads."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import SIMPLE_SPEC
from tunewire.client.spec import spec_from_dict, value_to_pb
from tunewire.server.app import RunningServer
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

PARAMS = {"x": 1.0, "lr": 0.01, "layers": 0, "opt": "sgd", "batch": 16}


@pytest.fixture
def stub(server: RunningServer) -> Iterator[api_grpc.TuningServiceStub]:
    channel = grpc.insecure_channel(server.target)
    yield api_grpc.TuningServiceStub(channel)
    channel.close()


def create(stub: api_grpc.TuningServiceStub, name: str = "s", **changes: object) -> None:
    raw = copy.deepcopy(SIMPLE_SPEC)
    raw.update(changes)
    stub.CreateStudy(api.CreateStudyRequest(name=name, spec=spec_from_dict(raw)))


def add(
    stub: api_grpc.TuningServiceStub,
    request_id: str,
    final: pb.Measurement | None = None,
    **params: object,
) -> pb.Trial:
    values = {k: value_to_pb(v) for k, v in {**PARAMS, **params}.items()}
    request = api.AddTrialRequest(
        study_name="s", parameters=values, request_id=request_id, final_measurement=final
    )
    return stub.AddTrial(request).trial


def count(stub: api_grpc.TuningServiceStub) -> int:
    return len(stub.ListTrials(api.ListTrialsRequest(study_name="s")).trials)


def test_add_trial_with_a_request_id_is_safe_to_retry(stub: api_grpc.TuningServiceStub) -> None:
    create(stub)
    first = add(stub, "warm-start-1")
    again = add(stub, "warm-start-1")
    assert again.id == first.id and count(stub) == 1
    assert add(stub, "warm-start-2").id != first.id and count(stub) == 2
    with pytest.raises(grpc.RpcError) as err:
        add(stub, "warm-start-1", x=2.0, lr=0.02)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"already added trial {first.id} with other values of lr, x; use a new id" in (
        err.value.details() or ""
    )
    with pytest.raises(grpc.RpcError) as err:
        add(stub, "warm-start-1", pb.Measurement(metrics={"loss": 0.5}))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"trial {first.id} with the same parameters but another result" in (
        err.value.details() or ""
    )
    # Without a request id every call adds a trial.
    add(stub, "")
    add(stub, "")
    assert count(stub) == 4


def suggest(stub: api_grpc.TuningServiceStub, worker: str = "w") -> pb.Trial:
    return stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s", worker_id=worker)).trials[0]


def report(
    stub: api_grpc.TuningServiceStub, trial: pb.Trial, step: int, loss: float, last: bool = False
) -> api.ReportMeasurementResponse:
    return stub.ReportMeasurement(
        api.ReportMeasurementRequest(
            study_name="s",
            trial_id=trial.id,
            worker_id=trial.worker_id,
            measurement=pb.Measurement(step=step, metrics={"loss": loss}, elapsed_seconds=step),
            last_step=last,
        )
    )


def complete(
    stub: api_grpc.TuningServiceStub, trial: pb.Trial, final: pb.Measurement | None
) -> pb.Trial:
    request = api.CompleteTrialRequest(study_name="s", trial_id=trial.id, worker_id=trial.worker_id)
    if final is not None:
        request.final_measurement.CopyFrom(final)
    return stub.CompleteTrial(request).trial


def test_a_final_measurement_keeps_its_step_and_elapsed_seconds(
    stub: api_grpc.TuningServiceStub,
) -> None:
    create(stub)
    trial = suggest(stub)
    for step in range(3):
        report(stub, trial, step, 1.0 / (step + 1))
    done = complete(stub, trial, pb.Measurement(step=7, metrics={"loss": 0.3}, elapsed_seconds=9.5))
    assert (done.final_measurement.step, done.final_measurement.elapsed_seconds) == (7, 9.5)
    stored = stub.GetTrial(api.GetTrialRequest(study_name="s", trial_id=trial.id)).trial
    assert (stored.final_measurement.step, stored.final_measurement.elapsed_seconds) == (7, 9.5)
    # Without them (or without a final measurement) they are the last report's.
    other = suggest(stub, "w2")
    for step in range(4):
        report(stub, other, step, 1.0)
    done = complete(stub, other, pb.Measurement(metrics={"loss": 0.9}))
    assert (done.final_measurement.step, done.final_measurement.elapsed_seconds) == (3, 3.0)
    # A retried CompleteTrial without final metrics is answered with the trial as it is.
    assert complete(stub, other, None).state == pb.TRIAL_STATE_COMPLETED


@pytest.mark.parametrize("how", ["max_step", "last_step", "neither"])
def test_a_trial_that_ran_its_full_length_is_not_stopped(
    stub: api_grpc.TuningServiceStub, how: str
) -> None:
    """The median rule would stop a trial that is worse than the others at its last step,
    which then counted as stopped early though it had finished."""
    policy: dict[str, object] = {"rule": "median", "min_completed_trials": 2}
    if how == "max_step":
        policy["max_step"] = 4
    create(stub, early_stopping=policy)
    for i in range(2):
        good = suggest(stub, f"good{i}")
        for step in range(5):
            report(stub, good, step, 0.1)
        complete(stub, good, None)
    bad = suggest(stub, "bad")
    # Its one report, at its last step, is worse than the median: without max_step or
    # last_step the rule stops the trial there, and it counts as stopped early.
    answer = report(stub, bad, 4, 5.0, last=how == "last_step")
    finished = how != "neither"
    assert answer.should_stop is not finished
    state = complete(stub, bad, None).state
    assert state == (pb.TRIAL_STATE_COMPLETED if finished else pb.TRIAL_STATE_STOPPED_EARLY)


def test_a_lost_lease_says_when_in_words(stub: api_grpc.TuningServiceStub) -> None:
    create(stub, lease_timeout_seconds=1.0)
    trial = suggest(stub)
    time.sleep(1.3)
    suggest(stub, "w2")  # the next call marks the trial lost
    with pytest.raises(grpc.RpcError) as err:
        report(stub, trial, 0, 1.0)
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "UTC" in details and " ago" in details and "'w'" in details
    assert "lease_timeout_seconds" in details


def test_a_clashing_spec_names_what_differs(stub: api_grpc.TuningServiceStub) -> None:
    create(stub)
    raw = copy.deepcopy(SIMPLE_SPEC)
    raw["seed"] = 99
    raw["parameters"][0]["max"] = 20.0
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec_from_dict(raw)))
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "parameters ['x']" in details and "seed: 1 stored, 99 asked" in details
