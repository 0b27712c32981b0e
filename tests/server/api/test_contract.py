"""The strict contract, one regression test per case a hostile-input run found: extreme but
well-formed requests get INVALID_ARGUMENT (or the status their meaning calls for) with a
bounded message, and a rejected call leaves the database exactly as it was."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

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
