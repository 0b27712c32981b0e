"""Interactive commands against a server they cannot use: they give up within seconds and
say what to check (address, TLS, token), against real servers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tunewire.client.cli import main
from tunewire.server.app import run_in_background


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code = main(list(argv))
    return code, capsys.readouterr().err, time.monotonic() - started


def test_no_server_at_the_address_fails_fast_and_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err, seconds = run(capsys, "study", "list", "--server", f"127.0.0.1:{port}")
    assert code == 1 and seconds < 10
    assert f"cannot reach the server at 127.0.0.1:{port}" in err
    assert "Connection refused" in err
    assert "`tunewire serve`" in err and "--server HOST:PORT or TUNEWIRE_SERVER" in err


def test_a_tls_server_without_tls_says_to_add_it(
    tls_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tls_files
    srv = run_in_background(
        f"sqlite:///{tmp_path / 'tls.db'}", tls_cert=str(cert), tls_key=str(key)
    )
    try:
        target = f"localhost:{srv.port}"
        code, err, seconds = run(capsys, "study", "list", "--server", target)
        assert code == 1 and seconds < 10
        assert "needs --tls" in err and "--tls-ca" in err
        code, _, _ = run(capsys, "study", "list", "--server", target, "--tls-ca", str(cert))
        assert code == 0
    finally:
        srv.stop(0)


def test_tls_against_a_plain_server_says_to_drop_it(
    tls_files: tuple[Path, Path], sqlite_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = tls_files
    target = sqlite_server.target  # type: ignore[attr-defined]
    code, err, seconds = run(capsys, "study", "list", "--server", target, "--tls-ca", str(cert))
    assert code == 1 and seconds < 10
    assert "needs no --tls" in err


def test_a_wrong_token_says_where_the_token_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = run_in_background(f"sqlite:///{tmp_path / 'token.db'}", token="s3cret")
    try:
        code, err, _ = run(capsys, "study", "list", "--server", srv.target, "--token", "nope")
        assert code == 1
        assert "UNAUTHENTICATED" in err and "--token or TUNEWIRE_TOKEN" in err
    finally:
        srv.stop(0)
