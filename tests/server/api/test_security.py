"""Bearer-token auth, TLS, health checking and reflection against real servers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import SIMPLE_SPEC
from tunewire.client import TunewireClientError, TuningClient
from tunewire.server.app import run_in_background


def test_token_required_except_for_health(tmp_path: Path) -> None:
    srv = run_in_background(f"sqlite:///{tmp_path / 'a.db'}", token="s3cret")
    try:
        for token, message in ((None, "missing bearer token"), ("wrong", "invalid bearer token")):
            c = TuningClient(srv.target, token=token, retry_timeout=1)
            with pytest.raises(TunewireClientError) as err:
                c.create_study("s", SIMPLE_SPEC)
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert message in err.value.details
            c.close()
        good = TuningClient(srv.target, token="s3cret")
        assert good.create_study("s", SIMPLE_SPEC).name == "s"
        good.close()
        channel = grpc.insecure_channel(srv.target)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tunewire.v1.TuningService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        channel.close()
    finally:
        srv.stop(0)


def test_reflection_lists_the_service(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    channel = grpc.insecure_channel(sqlite_server.target)
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"tunewire.v1.TuningService", "grpc.health.v1.Health"} <= names
    channel.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_with_token(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    srv = run_in_background(
        f"sqlite:///{tmp_path / 'tls.db'}", token="t", tls_cert=str(cert), tls_key=str(key)
    )
    try:
        c = TuningClient(f"localhost:{srv.port}", token="t", tls_ca=str(cert))
        c.create_study("s", SIMPLE_SPEC)
        (trial,) = c.suggest("s", "w")
        trial.report(0, {"loss": 1.0})
        assert trial.complete().state == "completed"
        c.close()
        plain = TuningClient(f"localhost:{srv.port}", token="t", retry_timeout=0.5, timeout=2)
        with pytest.raises(TunewireClientError) as err:
            plain.get_study("s")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        plain.close()
    finally:
        srv.stop(0)
