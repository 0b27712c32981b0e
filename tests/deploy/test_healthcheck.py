"""The image's HEALTHCHECK command (deploy/docker/healthcheck.py) against real servers:
plain, with a token (health stays open) and with TLS; a closed port is unhealthy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.server.api.test_security import _self_signed
from tunewire.server.app import run_in_background

HEALTHCHECK = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "healthcheck.py"


def healthcheck(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TUNEWIRE_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serving_server_is_healthy_with_a_token_too(tmp_path: Path) -> None:
    srv = run_in_background(f"sqlite:///{tmp_path / 'h.db'}", token="secret")
    try:
        done = healthcheck(TUNEWIRE_PORT=str(srv.port))
    finally:
        srv.stop(0)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"localhost:{srv.port}: SERVING"


def test_tls_server_is_probed_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    srv = run_in_background(
        f"sqlite:///{tmp_path / 'tls.db'}", tls_cert=str(cert), tls_key=str(key)
    )
    try:
        done = healthcheck(TUNEWIRE_PORT=str(srv.port), TUNEWIRE_TLS_CERT=str(cert))
    finally:
        srv.stop(0)
    assert done.returncode == 0, done.stderr
    assert "SERVING" in done.stdout


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = healthcheck(TUNEWIRE_HEALTHCHECK_TARGET=f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert "unhealthy" in done.stderr and "UNAVAILABLE" in done.stderr
