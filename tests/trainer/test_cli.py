"""`tunewire train` against a TLS server, as the README's production setup runs it: the
client commands' --tls / --tls-ca (or TUNEWIRE_TLS / TUNEWIRE_TLS_CA), and what a worker
says while it retries a server it cannot use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer, run_in_background
from tunewire.trainer.cli import main as train_main
from tunewire.trainer.worker import EXIT_UNREACHABLE

from .user_tasks import SPACE

TASKS = Path(__file__).with_name("user_tasks.py")


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path], tmp_path: Path) -> Iterator[RunningServer]:
    cert, key = tls_files
    srv = run_in_background(
        f"sqlite:///{tmp_path / 'tls.db'}", tls_cert=str(cert), tls_key=str(key)
    )
    try:
        yield srv
    finally:
        srv.stop(0)


def train(target: str, study: str, *flags: str) -> int:
    return train_main(
        ["--server", target, "--study", study, "--task", f"{TASKS}:quadratic"]
        + ["--devices", "cpu", "--progress", "off", "--max-trials", "2", *flags]
    )


def test_workers_train_against_a_tls_server(
    tls_server: RunningServer,
    tls_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert, _ = tls_files
    target = f"localhost:{tls_server.port}"
    with TuningClient(target, tls_ca=str(cert)) as client:
        client.create_study("flags", {**SPACE, "max_trials": 2})
        client.create_study("env", {**SPACE, "max_trials": 2})
        assert train(target, "flags", "--tls-ca", str(cert)) == 0, capsys.readouterr().err
        monkeypatch.setenv("TUNEWIRE_TLS", "1")
        monkeypatch.setenv("TUNEWIRE_TLS_CA", str(cert))
        assert train(target, "env") == 0, capsys.readouterr().err
        for study in ("flags", "env"):
            assert [t.state for t in client.list_trials(study)] == ["completed", "completed"]


def test_a_worker_without_tls_says_once_what_to_check_while_it_retries(
    tls_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hint comes once, after a second of retries, and the worker goes on retrying
    until --server-wait."""
    target = f"localhost:{tls_server.port}"
    assert train(target, "plain", "--server-wait", "6") == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert err.count(f"cannot reach the server at {target}") == 1, err
    assert "needs --tls (and --tls-ca CA.pem for a private CA)" in err
    assert "retrying for up to 6 s (--server-wait)" in err
    assert "tunewire train: worker " in err and f"server {target} unreachable for 6 s" in err
