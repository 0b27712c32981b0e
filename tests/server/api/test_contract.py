"""The strict contract, one regression test per case a hostile-input run found: extreme but
well-formed requests get INVALID_ARGUMENT (or the status their meaning calls for) with a
bounded message, and a rejected call leaves the database exactly as it was."""

from __future__ import annotations

import copy
import functools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.conftest import SIMPLE_SPEC
from tunewire.client.spec import spec_from_dict
from tunewire.server.app import RunningServer, run_in_background
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api
from tunewire.v1 import tuning_service_pb2_grpc as api_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT
INT64_MAX = 2**63 - 1


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    db = tmp_path / "contract.db"
    server = run_in_background(f"sqlite:///{db}")
    try:
        yield server, db
    finally:
        server.stop(0)


@pytest.fixture
def stub(served: tuple[RunningServer, Path]) -> Iterator[api_grpc.TuningServiceStub]:
    channel = grpc.insecure_channel(served[0].target)
    yield api_grpc.TuningServiceStub(channel)
    channel.close()


def rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table: a rejected call must leave these as they were."""
    con = sqlite3.connect(db)
    try:
        return {
            table: sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("studies", "trials", "measurements")
        }
    finally:
        con.close()


def rejected(db: Path, call: Callable[[], object], code: grpc.StatusCode, *needles: str) -> str:
    """Runs a call that must fail with `code`; checks that the database did not change and
    that the message is short and names what to fix."""
    before = rows(db)
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    details = err.value.details() or ""
    for needle in needles:
        assert needle in details, details
    assert len(details) < 600, details
    assert rows(db) == before
    return details


def spec(**overrides: object) -> pb.StudySpec:
    raw = copy.deepcopy(SIMPLE_SPEC)
    raw.update(overrides)
    return spec_from_dict(raw)


def create(
    stub: api_grpc.TuningServiceStub, s: pb.StudySpec, name: str = "s"
) -> Callable[[], object]:
    return lambda: stub.CreateStudy(api.CreateStudyRequest(name=name, spec=s))


def test_integer_bounds_beyond_what_round_trips_are_refused_and_nothing_is_stored(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    db = served[1]
    for low, high, scale, needle in [
        (-(2**63), INT64_MAX, pb.SCALE_LINEAR, "within ±9,007,199,254,740,991"),
        (1, INT64_MAX, pb.SCALE_LOG, "within ±9,007,199,254,740,991"),
        (0, 2**53, pb.SCALE_LINEAR, "within ±"),
    ]:
        s = spec()
        s.parameters[2].integer_range.CopyFrom(
            pb.IntegerRange(min_value=low, max_value=high, scale=scale)
        )
        rejected(db, create(stub, s), INVALID, "parameter 'layers'", needle)
    # The server still answers everyone: nothing broken was stored.
    assert list(stub.ListStudies(api.ListStudiesRequest()).studies) == []
    s = spec()
    s.parameters[2].integer_range.CopyFrom(pb.IntegerRange(min_value=0, max_value=2**53 - 1))
    assert stub.CreateStudy(api.CreateStudyRequest(name="edge", spec=s)).created
    got = stub.GetStudy(api.GetStudyRequest(name="edge")).study
    assert got.spec.parameters[2].integer_range.max_value == 2**53 - 1


@pytest.mark.parametrize(
    ("rule", "settings", "needle"),
    [
        ("median", {"grace_period_steps": INT64_MAX}, "grace_period_steps must be a whole number"),
        ("successive_halving", {"min_resource": INT64_MAX}, "min_resource must be a whole number"),
        ("successive_halving", {"reduction_factor": 1e308}, "reduction_factor must be from"),
        ("successive_halving", {"reduction_factor": 1.000001}, "reduction_factor must be from"),
        ("patience", {"min_delta": 1e308}, "min_delta must be a finite number"),
        ("threshold", {"bound": 1e308}, "finite bound"),
        ("median", {"min_completed_trials": 2**31 - 1}, "min_completed_trials"),
    ],
)
def test_extreme_early_stopping_settings_are_refused(
    stub: api_grpc.TuningServiceStub,
    served: tuple[RunningServer, Path],
    rule: str,
    settings: dict[str, float],
    needle: str,
) -> None:
    s = spec()
    message = getattr(s.early_stopping, rule)
    for key, value in settings.items():
        setattr(message, key, value)
    message.SetInParent()
    rejected(served[1], create(stub, s), INVALID, needle)


@pytest.mark.parametrize("lease", [1e308, 5e-324, 0.5, 31 * 24 * 3600.0, float("inf"), -1.0])
def test_a_lease_outside_one_second_to_thirty_days_is_refused(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path], lease: float
) -> None:
    rejected(
        served[1],
        create(stub, spec(lease_timeout_seconds=lease)),
        INVALID,
        "lease_timeout_seconds must be between 1 and 2.592e+06",
    )


def test_a_grid_too_large_to_walk_is_refused(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    db = served[1]
    rejected(
        db,
        create(stub, spec(algorithm="grid", grid_resolution=2**31 - 1)),
        INVALID,
        "grid_resolution",
    )
    wide = [{"name": f"p{i}", "type": "int", "min": 0, "max": 9} for i in range(8)]
    rejected(
        db,
        create(stub, spec(algorithm="grid", parameters=wide)),
        INVALID,
        "more than 100,000 points",
    )
    assert stub.CreateStudy(
        api.CreateStudyRequest(name="ok", spec=spec(algorithm="grid", parameters=wide[:4]))
    ).created


def test_spaces_that_can_never_work_or_mean_something_else_are_refused(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    db = served[1]
    s = spec()
    s.parameters[0].float_range.CopyFrom(pb.FloatRange(min_value=-1e308, max_value=1e308))
    rejected(db, create(stub, s), INVALID, "within ±1e+300")
    s = spec()
    s.parameters[0].float_range.CopyFrom(pb.FloatRange(min_value=1.0, max_value=1.0 + 1e-16))
    rejected(db, create(stub, s), INVALID)
    s = spec()
    s.parameters[0].float_range.scale = 99  # type: ignore[assignment]
    rejected(db, create(stub, s), INVALID, "unknown scale 99")
    s = spec()
    s.metrics[0].goal = 7  # type: ignore[assignment]
    rejected(db, create(stub, s), INVALID, "GOAL_MINIMIZE or GOAL_MAXIMIZE")
    for low, high, needle in [(3.0, 1.0, "is above its max"), (float("nan"), 2.0, "finite")]:
        s = spec()
        s.parameters[3].condition.min_value = low
        s.parameters[3].condition.max_value = high
        rejected(db, create(stub, s), INVALID, needle)
    s = spec()
    s.parameters[3].condition.values.add(string_value="one")  # the parent is an int
    rejected(db, create(stub, s), INVALID, "parameter 'layers' is numeric")
    # Discrete values a reported value could not be told apart by.
    for values in ([5e-324, 1e-323], [0.1, 0.1 + 1e-13], [2.0**53, 2.0**53 + 2]):
        close = [{"name": "d", "type": "discrete", "values": values}]
        rejected(db, create(stub, spec(parameters=close)), INVALID, "too close to tell apart")


def test_a_threshold_bound_of_zero_is_zero(stub: api_grpc.TuningServiceStub) -> None:
    s = spec(early_stopping={"rule": "threshold", "bound": 0.0, "after_step": 1})
    assert s.early_stopping.threshold.bound == 0.0  # proto3 sends no zero
    stub.CreateStudy(api.CreateStudyRequest(name="t", spec=s))
    trial = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="t", worker_id="w")).trials[0]

    def report(step: int, loss: float) -> bool:
        return stub.ReportMeasurement(
            api.ReportMeasurementRequest(
                study_name="t",
                trial_id=trial.id,
                worker_id="w",
                measurement=pb.Measurement(step=step, metrics={"loss": loss}),
            )
        ).should_stop

    assert not report(1, -0.5)
    assert report(2, 0.25)  # worse than a bound of 0 when minimising


def test_reports_with_impossible_numbers_are_refused(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    db = served[1]
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec()))
    trial = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s", worker_id="w")).trials[0]

    def report(**fields: object) -> Callable[[], object]:
        m = pb.Measurement(step=fields.pop("step", 0), metrics=fields.pop("metrics", {"loss": 1}))
        for key, value in fields.items():
            setattr(m, key, value)
        request = api.ReportMeasurementRequest(
            study_name="s", trial_id=trial.id, worker_id="w", measurement=m
        )
        return lambda: stub.ReportMeasurement(request)

    for elapsed in (float("nan"), -1.0, float("inf"), 1e12):
        rejected(db, report(elapsed_seconds=elapsed), INVALID, "elapsed_seconds must be between")
    rejected(db, report(step=INT64_MAX), INVALID, "step must be between 0 and")
    rejected(db, report(metrics={"loss": 1e308}), INVALID, "beyond ±1e+300")
    assert not stub.ReportMeasurement(
        api.ReportMeasurementRequest(
            study_name="s",
            trial_id=trial.id,
            worker_id="w",
            measurement=pb.Measurement(step=2**53 - 1, metrics={"loss": 1.0}, elapsed_seconds=3),
        )
    ).should_stop


def test_a_completed_study_takes_no_added_trials(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec(max_trials=1)))
    trial = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s", worker_id="w")).trials[0]
    stub.CompleteTrial(
        api.CompleteTrialRequest(
            study_name="s",
            trial_id=trial.id,
            worker_id="w",
            final_measurement=pb.Measurement(metrics={"loss": 1.0}),
        )
    )
    assert stub.GetStudy(api.GetStudyRequest(name="s")).study.state == pb.STUDY_STATE_COMPLETED
    request = api.AddTrialRequest(study_name="s", parameters=trial.parameters)
    rejected(
        served[1],
        lambda: stub.AddTrial(request),
        grpc.StatusCode.FAILED_PRECONDITION,
        "is completed",
    )


def wide_categorical(values: int) -> list[dict[str, object]]:
    """One categorical parameter whose values are 256 characters each."""
    choices = [f"{i:06d}" + "v" * 250 for i in range(values)]
    return [{"name": "c", "type": "categorical", "values": choices}]


def test_answers_stay_within_a_default_client_limit(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    db = served[1]
    rejected(
        db,
        create(stub, spec(parameters=wide_categorical(5000))),
        INVALID,
        "at most 1,048,576",
    )
    # Four specs of 0.9 MB: a page of all of them would pass gRPC's default 4 MiB.
    for i in range(4):
        stub.CreateStudy(
            api.CreateStudyRequest(name=f"big{i}", spec=spec(parameters=wide_categorical(3500)))
        )
    names, token, pages = [], "", 0
    while True:
        page = stub.ListStudies(api.ListStudiesRequest(page_token=token))
        assert page.ByteSize() < 4 * 1024 * 1024
        names += [s.name for s in page.studies]
        pages, token = pages + 1, page.next_page_token
        if not token:
            break
    assert names == [f"big{i}" for i in range(4)] and pages == 2


def test_a_trial_state_filter_is_bounded_and_repeats_count_once(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec()))
    stub.SuggestTrials(api.SuggestTrialsRequest(study_name="s", worker_id="w"))
    active = [pb.TRIAL_STATE_ACTIVE] * 100
    listed = stub.ListTrials(api.ListTrialsRequest(study_name="s", states=active))
    assert [t.state for t in listed.trials] == [pb.TRIAL_STATE_ACTIVE]
    request = api.ListTrialsRequest(study_name="s", states=active * 1000)
    rejected(served[1], lambda: stub.ListTrials(request), INVALID, "at most 100")


def test_a_grid_over_the_most_parameters_a_study_may_have_is_walked(
    stub: api_grpc.TuningServiceStub,
) -> None:
    single = [{"name": f"p{i}", "type": "categorical", "values": ["a"]} for i in range(1000)]
    stub.CreateStudy(
        api.CreateStudyRequest(name="g", spec=spec(algorithm="grid", parameters=single))
    )
    trial = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="g", worker_id="w")).trials[0]
    assert len(trial.parameters) == 1000


@pytest.mark.parametrize("method", ["CreateStudy", "ReportMeasurement", "ListTrials"])
def test_bytes_that_are_not_a_message_get_invalid_argument_without_internals(
    served: tuple[RunningServer, Path], method: str
) -> None:
    channel = grpc.insecure_channel(served[0].target)
    try:
        call = channel.unary_unary(f"/tunewire.v1.TuningService/{method}")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff\x0f garbage")
        assert err.value.code() == INVALID
        details = err.value.details() or ""
        assert f"not a valid tunewire.v1.{method}Request message" in details
        assert "DecodeError" not in details and "Unexpected" not in details
    finally:
        channel.close()


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ],
)
def test_health_and_reflection_refuse_bytes_that_are_not_a_message_without_internals(
    served: tuple[RunningServer, Path], method: str
) -> None:
    garbage = b"\xff\xff\xff\xff\x0f garbage"
    channel = grpc.insecure_channel(served[0].target)
    try:
        with pytest.raises(grpc.RpcError) as err:
            if method.endswith("/Check"):
                channel.unary_unary(method)(garbage, timeout=10)
            elif method.endswith("/Watch"):
                list(channel.unary_stream(method)(garbage, timeout=10))
            else:
                list(channel.stream_stream(method)(iter([garbage]), timeout=10))
        assert err.value.code() == INVALID
        details = err.value.details() or ""
        assert details.startswith("the request is not a valid grpc."), details
        assert "DecodeError" not in details and "Unexpected" not in details
        # The same services still answer well-formed requests.
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        assert check(health_pb2.HealthCheckRequest(), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    finally:
        channel.close()


def test_messages_quote_long_input_cut_short(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    long_name = "n" * 10_000
    details = rejected(
        served[1],
        lambda: stub.GetStudy(api.GetStudyRequest(name=long_name)),
        INVALID,
        "study name",
        "(10002 characters)",
    )
    assert len(details) < 300
    s = spec()
    s.parameters[4].categorical.values.append("v" * 5000)
    rejected(served[1], create(stub, s), INVALID, "1-256 characters")


def test_exactly_one_authorization_header(tmp_path: Path) -> None:
    server = run_in_background(f"sqlite:///{tmp_path / 'auth.db'}", token="right")
    channel = grpc.insecure_channel(server.target)
    try:
        stub = api_grpc.TuningServiceStub(channel)
        request = api.ListStudiesRequest()
        assert not stub.ListStudies(request, metadata=[("authorization", "Bearer right")]).studies
        for metadata, needle in [
            ([("authorization", "Bearer wrong"), ("authorization", "Bearer right")], "exactly one"),
            ([("authorization", "Bearer right"), ("authorization", "Bearer right")], "exactly one"),
            ([], "--token or TUNEWIRE_TOKEN"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                stub.ListStudies(request, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert needle in (err.value.details() or "")
    finally:
        channel.close()
        server.stop(0)


def test_worker_ids_with_characters_that_reorder_text_are_refused(
    stub: api_grpc.TuningServiceStub, served: tuple[RunningServer, Path]
) -> None:
    stub.CreateStudy(api.CreateStudyRequest(name="s", spec=spec()))
    for worker in ("gpu\u202e1", "gpu\u20281", "gpu\x851"):
        request = api.SuggestTrialsRequest(study_name="s", worker_id=worker)
        rejected(served[1], functools.partial(stub.SuggestTrials, request), INVALID, "worker_id")


def test_a_range_from_minus_zero_is_the_range_from_zero(
    stub: api_grpc.TuningServiceStub,
) -> None:
    s = spec()
    s.parameters[0].float_range.min_value = 0.0
    first = stub.CreateStudy(api.CreateStudyRequest(name="z", spec=s))
    s.parameters[0].float_range.min_value = -0.0
    again = stub.CreateStudy(api.CreateStudyRequest(name="z", spec=s))
    assert first.created and not again.created


def test_a_server_listens_on_an_ipv6_loopback_address(tmp_path: Path) -> None:
    server = run_in_background(f"sqlite:///{tmp_path / 'v6.db'}", host="::1")
    try:
        assert server.target.startswith("[::1]:")
        channel = grpc.insecure_channel(server.target)
        stub = api_grpc.TuningServiceStub(channel)
        assert not stub.ListStudies(api.ListStudiesRequest(), timeout=10).studies
        channel.close()
    finally:
        server.stop(0)


def test_a_wide_gp_study_answers_a_large_ask_in_parts(stub: api_grpc.TuningServiceStub) -> None:
    # 1,000 model inputs: one call optimises at most 10 candidates (10,000 / 1,000); the
    # worker asks again for the rest instead of holding a thread for a minute.
    wide = [{"name": f"x{i}", "type": "float", "min": 0.0, "max": 1.0} for i in range(1000)]
    stub.CreateStudy(
        api.CreateStudyRequest(name="w", spec=spec(algorithm="gp", parameters=wide, seed=1))
    )
    for k in range(12):
        values = {
            f"x{i}": pb.ParameterValue(number_value=((k * 7 + i) % 13) / 13) for i in range(1000)
        }
        stub.AddTrial(
            api.AddTrialRequest(
                study_name="w",
                parameters=values,
                final_measurement=pb.Measurement(metrics={"loss": float(k % 5)}),
            )
        )
    answer = stub.SuggestTrials(api.SuggestTrialsRequest(study_name="w", worker_id="w", count=100))
    assert len(answer.trials) == 10 and not answer.study_done
