"""The `tunewire` command line against a real server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import SIMPLE_SPEC
from tunewire.client import TuningClient
from tunewire.client.cli import main
from tunewire.server.app import RunningServer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_study_commands(
    sqlite_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--server", sqlite_server.target]
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(dict(SIMPLE_SPEC, name="cli", max_trials=3)))
    code, out, _ = run(capsys, "study", "create", str(spec_file), *target)
    assert code == 0 and "study cli: active, algorithm random" in out
    client = TuningClient(sqlite_server.target)
    for trial in client.worker_loop("cli", "w"):
        trial.report(0, {"loss": float(trial.id)})
        trial.complete({"loss": float(trial.id), "acc": 0.5})
    client.close()
    code, out, _ = run(capsys, "study", "list", *target)
    assert "study cli: completed" in out and "3 completed" in out
    code, out, _ = run(capsys, "study", "show", "cli", *target)
    assert out.count("completed") >= 4
    code, out, _ = run(capsys, "study", "best", "cli", "--count", "2", *target)
    assert out.splitlines()[0].split()[0] == "#1" and len(out.splitlines()) == 2
    code, out, _ = run(capsys, "study", "export", "cli", "--format", "csv", *target)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["trial_id"] for r in rows] == ["1", "2", "3"] and rows[0]["loss"] == "1.0"
    export = tmp_path / "trials.json"
    code, _, _ = run(
        capsys, "study", "export", "cli", "--format", "json", "-o", str(export), *target
    )
    data = json.loads(export.read_text())
    assert data[0]["measurements"] == [[0, {"loss": 1.0}]]
    code, out, _ = run(capsys, "trial", "list", "cli", "--state", "completed", *target)
    assert len(out.splitlines()) == 3
    code, out, err = run(capsys, "study", "show", "missing", *target)
    assert code == 1 and "NOT_FOUND" in err and "'missing' not found" in err
    code, out, err = run(capsys, "study", "stop", "cli", *target)
    assert code == 0


def test_bad_spec_file_is_reported(
    sqlite_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(SIMPLE_SPEC, name="bad", algorithm="nope")))
    code, _, err = run(capsys, "study", "create", str(bad), "--server", sqlite_server.target)
    assert code == 1 and "INVALID_ARGUMENT" in err and "unknown algorithm 'nope'" in err


def test_serve_with_no_flags_uses_sqlite_in_working_dir(tmp_path: Path) -> None:
    """`tunewire serve` needs no flags: a SQLite file in the working directory. The port
    and host come from TUNEWIRE_* variables here only to keep the test on loopback."""
    import os
    import signal
    import subprocess
    import sys

    from benchmarks.common import free_port

    port = free_port()
    env = dict(os.environ, TUNEWIRE_PORT=str(port), TUNEWIRE_HOST="127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunewire.client.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = TuningClient(f"127.0.0.1:{port}", retry_timeout=60)
        client.create_study("s", SIMPLE_SPEC)
        assert (tmp_path / "tunewire.db").exists()
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert f"listening on 127.0.0.1:{port}" in out.decode()


def test_an_unknown_trial_state_is_one_line_naming_the_real_states(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trial", "list", "s", "--state", "complete", "--server", sqlite_server.target])
    assert exit_info.value.code == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "invalid choice: 'complete'" in error and "'completed'" in error
    assert "'stopped_early'" in error and "unspecified" not in error


def test_metrics_print_objective_first_then_sorted(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--server", sqlite_server.target]
    code, out, _ = run(capsys, "study", "list", *target)
    assert code == 0 and out.startswith("no studies on ")
    with TuningClient(sqlite_server.target) as client:
        client.create_study("order", dict(SIMPLE_SPEC, max_trials=2))
        for trial in client.worker_loop("order", "w"):
            trial.complete({"zeta": 1.0, "loss": 2.0, "alpha": 3.0, "mid": 4.0})
    for argv in (
        ["study", "best", "order"],
        ["trial", "list", "order"],
        ["study", "show", "order"],
    ):
        code, out, _ = run(capsys, *argv, *target)
        lines = [line for line in out.splitlines() if line.startswith("  #")]
        assert code == 0 and lines
        for line in lines:
            assert "loss=2, alpha=3, mid=4, zeta=1" in line, line


def test_a_closed_pipe_ends_the_command_quietly(sqlite_server: RunningServer) -> None:
    """`tunewire study show X | head` when head has gone: no traceback, no "Broken pipe"."""
    import subprocess
    import sys

    with TuningClient(sqlite_server.target) as client:
        client.create_study("piped", dict(SIMPLE_SPEC, max_trials=3))
        for trial in client.worker_loop("piped", "w"):
            trial.complete({"loss": 1.0})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunewire.client.cli", "study", "show", "piped"]
        + ["--server", sqlite_server.target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""
