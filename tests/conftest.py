"""Shared fixtures: real servers on loopback ports over a real SQLite file or PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer, run_in_background

PG_ADMIN_URL = os.environ.get(
    "TUNEWIRE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# A silent address (a firewall dropping packets) must not stall the run for minutes.
PG_CONNECT_TIMEOUT_S = 3


def pg_unreachable() -> str | None:
    """None when PostgreSQL answers at PG_ADMIN_URL, else why not and what to set."""
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable here"
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shown = make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        return (
            f"PostgreSQL is not reachable at {shown} ({why}); set TUNEWIRE_TEST_PG "
            "to the admin URL of a reachable server"
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A freshly created PostgreSQL database for this test run, dropped afterwards."""
    message = pg_unreachable()
    if message is not None:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"tw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        has = conn.execute(text("SELECT to_regclass('public.studies')")).scalar()
        if has:
            conn.execute(text("TRUNCATE measurements, trials, studies RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage backend: a new SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tunewire.db'}"
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture
def server(storage_url: str) -> Iterator[RunningServer]:
    srv = run_in_background(storage_url)
    try:
        yield srv
    finally:
        srv.stop(0)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = run_in_background(f"sqlite:///{tmp_path / 'tunewire.db'}")
    try:
        yield srv
    finally:
        srv.stop(0)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for localhost and 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def client(server: RunningServer) -> Iterator[TuningClient]:
    c = TuningClient(server.target, timeout=30, retry_timeout=5)
    try:
        yield c
    finally:
        c.close()


SIMPLE_SPEC = {
    "parameters": [
        {"name": "x", "type": "float", "min": -5.0, "max": 10.0},
        {"name": "lr", "type": "float", "min": 1e-4, "max": 0.1, "scale": "log"},
        {"name": "layers", "type": "int", "min": 0, "max": 3},
        {
            "name": "units_1",
            "type": "int",
            "min": 16,
            "max": 512,
            "scale": "log",
            "condition": {"parent": "layers", "min": 1},
        },
        {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
        {"name": "batch", "type": "discrete", "values": [16, 32, 64]},
    ],
    "metrics": [{"name": "loss", "goal": "minimize"}],
    "algorithm": "random",
    "seed": 1,
}
