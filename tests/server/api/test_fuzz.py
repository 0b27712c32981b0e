"""Property-based fuzzing of every RPC against a real server process (SQLite and PostgreSQL):
well-formed requests with extreme values, valid requests with fields overwritten, and raw
bytes. Every answer is one of the documented statuses, never INTERNAL or UNKNOWN; a
rejected call leaves the database as it was; the server stays healthy and its memory
bounded. Deterministic in CI (derandomize); TUNEWIRE_FUZZ_EXAMPLES sets the examples per
RPC (default 40)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from tests.conftest import SIMPLE_SPEC, _truncate
from tests.server.api.fuzzing import build, message_values, mutated
from tunewire.client.spec import spec_from_dict
from tunewire.v1 import study_pb2 as pb
from tunewire.v1 import tuning_service_pb2 as api

pytestmark = pytest.mark.slow

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
SERVICE = api.DESCRIPTOR.services_by_name["TuningService"]
METHODS = [m.name for m in SERVICE.methods]
EXAMPLES = int(os.environ.get("TUNEWIRE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
SPEC = {**SIMPLE_SPEC, "early_stopping": {"rule": "median", "min_completed_trials": 1}}
MAX_RSS_GROWTH_MB = 300


class Server:
    """`tunewire serve` in its own process, its database, and the study every example
    starts from."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tunewire.server",
                "--port",
                "0",
                "--storage",
                url,
                "--threads",
                "4",
                "--torch-threads",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("tunewire server listening on"), log.read_text()[-2000:]
        self.channel = grpc.insecure_channel(line.rsplit(" ", 1)[-1].strip())
        self.engine = create_engine(url)
        self.base_rss = self.rss_mb()

    def call(self, method: str, request: Any, raw: bool = False) -> tuple[grpc.StatusCode, str]:
        kind = SERVICE.methods_by_name[method]
        response_type = getattr(api, kind.output_type.name)
        rpc = self.channel.unary_unary(
            f"/{SERVICE.full_name}/{method}",
            request_serializer=None if raw else type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            rpc(request, timeout=60)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    def ensure_study(self) -> None:
        """Study "s" active, with a trial held by worker "w" and reports on it (a fuzzed
        call may have deleted, stopped or finished them)."""
        self.call("CreateStudy", api.CreateStudyRequest(name="s", spec=spec_from_dict(SPEC)))
        self.call("ResumeStudy", api.ResumeStudyRequest(name="s"))
        self.call("SuggestTrials", api.SuggestTrialsRequest(study_name="s", worker_id="w"))

    def rows(self) -> dict[str, list[Any]]:
        with self.engine.connect() as conn:
            return {
                t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                for t in ("studies", "trials", "measurements")
            }

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert match
        return int(match.group(1)) / 1024

    def healthy(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def stop(self) -> None:
        self.channel.close()
        self.engine.dispose()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'fuzz.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        _truncate(url)
    srv = Server(url, folder / "server.log")
    try:
        yield srv
        assert srv.process.poll() is None, "the server died"
        assert srv.healthy()
        assert srv.rss_mb() - srv.base_rss < MAX_RSS_GROWTH_MB
    finally:
        srv.stop()
        if request.param == "postgres":
            _truncate(url)


def valid_request(method: str) -> Any:
    """A request of `method` that would succeed against study "s" (the start of a
    mutation)."""
    measurement = pb.Measurement(step=3, metrics={"loss": 0.5}, elapsed_seconds=1.0)
    params = {"x": 1.0, "lr": 0.01, "layers": 1, "units_1": 32, "opt": "sgd", "batch": 16}
    values = {k: spec_value(v) for k, v in params.items()}
    requests: dict[str, Callable[[], Any]] = {
        "CreateStudy": lambda: api.CreateStudyRequest(name="s2", spec=spec_from_dict(SPEC)),
        "GetStudy": lambda: api.GetStudyRequest(name="s"),
        "ListStudies": lambda: api.ListStudiesRequest(page_size=2),
        "DeleteStudy": lambda: api.DeleteStudyRequest(name="s2"),
        "StopStudy": lambda: api.StopStudyRequest(name="s"),
        "ResumeStudy": lambda: api.ResumeStudyRequest(name="s"),
        "SuggestTrials": lambda: api.SuggestTrialsRequest(study_name="s", worker_id="w2"),
        "ReportMeasurement": lambda: api.ReportMeasurementRequest(
            study_name="s", trial_id=1, worker_id="w", measurement=measurement
        ),
        "Heartbeat": lambda: api.HeartbeatRequest(study_name="s", trial_id=1, worker_id="w"),
        "CompleteTrial": lambda: api.CompleteTrialRequest(
            study_name="s", trial_id=1, worker_id="w", final_measurement=measurement
        ),
        "FailTrial": lambda: api.FailTrialRequest(
            study_name="s", trial_id=1, worker_id="w", reason="boom"
        ),
        "ReleaseTrial": lambda: api.ReleaseTrialRequest(study_name="s", trial_id=1, worker_id="w"),
        "AddTrial": lambda: api.AddTrialRequest(
            study_name="s", parameters=values, final_measurement=measurement
        ),
        "GetTrial": lambda: api.GetTrialRequest(study_name="s", trial_id=1),
        "ListTrials": lambda: api.ListTrialsRequest(study_name="s", page_size=2),
        "ListOptimalTrials": lambda: api.ListOptimalTrialsRequest(study_name="s", count=2),
        "ListStudyChanges": lambda: api.ListStudyChangesRequest(study_name="s", page_size=2),
    }
    return requests[method]()


def spec_value(value: Any) -> pb.ParameterValue:
    from tunewire.client.spec import value_to_pb

    return value_to_pb(value)


def requests_of(method: str) -> st.SearchStrategy[Any]:
    request_type = getattr(api, SERVICE.methods_by_name[method].input_type.name)
    generic = message_values(request_type.DESCRIPTOR).map(lambda v: build(request_type, v))
    return st.one_of(generic, mutated(valid_request(method)))


def check(server: Server, method: str, request: Any, raw: bool = False) -> None:
    server.ensure_study()
    before = server.rows()
    code, details = server.call(method, request, raw=raw)
    assert code in ALLOWED, f"{method} -> {code.name}: {details}\n{request!r}"
    if code is not grpc.StatusCode.OK:
        assert len(details) <= 2000, details[:200]
        assert server.rows() == before, f"{method} was rejected ({code.name}) but changed rows"


@pytest.mark.parametrize("method", METHODS)
def test_every_request_gets_a_documented_status_and_rejections_change_nothing(
    server: Server, method: str
) -> None:
    @FUZZ
    @given(request=requests_of(method))
    def run(request: Any) -> None:
        check(server, method, request)

    run()


def test_raw_bytes_get_a_documented_status(server: Server) -> None:
    @FUZZ
    @given(method=st.sampled_from(METHODS), payload=st.binary(max_size=256))
    def run(method: str, payload: bytes) -> None:
        check(server, method, payload, raw=True)

    run()
