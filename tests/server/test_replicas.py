"""Several server processes on one database, many concurrent workers, and a server killed
with SIGKILL under load: no trial handed out twice, nothing acknowledged lost."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import free_port, start_server_process
from tests.conftest import SIMPLE_SPEC
from tunewire.client import TunewireClientError, TuningClient

pytestmark = pytest.mark.slow


def start_server(storage: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_server_process(storage, port, log, threads=16)


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    from tests.conftest import _truncate

    _truncate(pg_database)
    yield pg_database


def run_workers(
    target: str, study: str, n_workers: int, steps: int, acked: list, errors: list
) -> None:
    def worker(i: int) -> None:
        client = TuningClient(target, timeout=20, retry_timeout=60)
        try:
            for trial in client.worker_loop(study, f"w{i}", poll_interval=0.05):
                for step in range(steps):
                    trial.report(step, {"loss": float(trial.id * 10 + step)})
                    acked.append(("report", trial.id, step, f"w{i}"))
                trial.complete({"loss": float(trial.id)})
                acked.append(("complete", trial.id, -1, f"w{i}"))
        except TunewireClientError as exc:
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)


def check_exact(client: TuningClient, study: str, n_trials: int, steps: int, acked: list) -> None:
    trials = client.list_trials(study)
    assert len(trials) == n_trials
    assert all(t.state == "completed" for t in trials)
    completes = [a for a in acked if a[0] == "complete"]
    # every trial id was handed to exactly one worker and completed once
    assert sorted(a[1] for a in completes) == list(range(1, n_trials + 1))
    owners = {a[1]: a[3] for a in completes}
    for t in trials:
        assert t.worker_id == owners[t.id]
        assert [m[0] for m in t.measurements] == list(range(steps))
        assert t.final_metrics == {"loss": float(t.id)}
    reports = Counter((a[1], a[2]) for a in acked if a[0] == "report")
    assert len(reports) == n_trials * steps


def test_two_replicas_on_postgres_with_32_workers(pg_url: str, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    procs = [start_server(pg_url, p, tmp_path / f"server{p}.log") for p in ports]
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
        admin = TuningClient(target)
        admin.create_study("replicas", dict(SIMPLE_SPEC, max_trials=160))
        acked: list = []
        errors: list = []
        run_workers(target, "replicas", 32, 3, acked, errors)
        assert errors == []
        check_exact(admin, "replicas", 160, 3, acked)
        admin.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_under_load_loses_nothing_acknowledged(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = (
        f"sqlite:///{tmp_path / 'kill.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(storage, port, log)
    target = f"127.0.0.1:{port}"
    admin = TuningClient(target, retry_timeout=60)
    admin.create_study("kill", dict(SIMPLE_SPEC, max_trials=120, lease_timeout_seconds=120))
    acked: list = []
    errors: list = []
    load = threading.Thread(target=run_workers, args=(target, "kill", 16, 4, acked, errors))
    load.start()
    try:
        while len(acked) < 150:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        time.sleep(0.5)
        proc = start_server(storage, port, log)
        load.join(timeout=600)
        assert not load.is_alive()
        assert errors == []
        check_exact(admin, "kill", 120, 4, acked)
    finally:
        admin.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    assert os.path.exists(log)
