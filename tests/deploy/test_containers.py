"""The Docker images end to end with a real engine: both targets build, a server container
with a data volume serves two trainer containers until a small digits study finishes, and
every trial survives a restart of the container (and a new container on the same volume);
the image's HEALTHCHECK reports healthy and /metrics counts the study.

Runs when a Docker engine answers, or always with TUNEWIRE_DOCKER_TESTS=1 (then an
unusable engine fails the test); TUNEWIRE_DOCKER_TESTS=0 skips it. `scripts/container_test.sh`
prepares a machine without Docker (engine, base image, wheels) and runs it. All containers
use the host network and listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tunewire.client import TuningClient

REPO = Path(__file__).resolve().parents[2]
LOCAL_BASE = "tunewire-base:bookworm"
SERVER_IMAGE = "tunewire-server:test"
TRAINER_IMAGE = "tunewire-trainer:test"
STUDY = "containers"
TRIALS = 6
# Small and quick: 3 epochs each, the GP takes over after 4 Sobol points.
STUDY_SPEC = f"""\
parameters:
  - {{name: hidden_layers, type: int, min: 0, max: 2}}
  - {{name: units, type: int, min: 16, max: 128, scale: log}}
  - {{name: lr, type: float, min: 1.0e-3, max: 0.1, scale: log}}
  - {{name: max_epochs, type: discrete, values: [3]}}
metrics:
  - {{name: val_loss, goal: minimize}}
algorithm: gp
initial_trials: 4
seed: 0
max_trials: {TRIALS}
"""


def _docker_usable() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker command"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return False, f"docker engine not usable: {probe.stderr.strip()[:200]}"
    return True, ""


def _require_docker() -> None:
    wanted = os.environ.get("TUNEWIRE_DOCKER_TESTS", "")
    if wanted == "0":
        pytest.skip("TUNEWIRE_DOCKER_TESTS=0")
    usable, why = _docker_usable()
    if usable:
        return
    if wanted == "1":
        pytest.fail(f"TUNEWIRE_DOCKER_TESTS=1 but {why} (see scripts/container_test.sh)")
    pytest.skip(f"{why}; scripts/container_test.sh sets one up")


pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Runs a docker command; returns stdout, raises with stderr on failure."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health_status(container: str) -> str:
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container))
    if not state.get("Running"):
        logs = docker("logs", "--tail", "40", container, check=False)
        raise AssertionError(f"{container} is not running: {state.get('Status')}\n{logs}")
    return str((state.get("Health") or {}).get("Status", "none"))


def wait_healthy(container: str, timeout: float = 120) -> float:
    """Waits until the image's HEALTHCHECK (gRPC health) says healthy; returns the seconds."""
    start = time.monotonic()
    status = ""
    while time.monotonic() - start < timeout:
        status = health_status(container)
        if status == "healthy":
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"{container} not healthy after {timeout} s: {status}")


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    """Builds the wheels (cached) and both targets, on the local base when it exists."""
    _require_docker()
    python_tag = f"{sys.version_info[0]}.{sys.version_info[1]}"
    local = subprocess.run(["docker", "image", "inspect", LOCAL_BASE], capture_output=True)
    base = os.environ.get("TUNEWIRE_DOCKER_BASE") or (
        LOCAL_BASE if local.returncode == 0 else f"python:{python_tag}-slim-bookworm"
    )
    wheels = f".wheels/cp{python_tag.replace('.', '')}"
    subprocess.run(
        ["bash", "deploy/docker/build_wheels.sh", wheels],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        timeout=1200,
    )
    timings = {}
    for target, tag in (("server", SERVER_IMAGE), ("trainer", TRAINER_IMAGE)):
        start = time.monotonic()
        docker(
            "build", "--network", "host", "--target", target, "--tag", tag,
            "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"TRAINER_BASE_IMAGE={base}",
            "--build-arg", f"WHEELS={wheels}",
            str(REPO),
            timeout=1500,
        )  # fmt: skip
        timings[target] = time.monotonic() - start
    sizes = {
        tag: int(docker("image", "inspect", "--format", "{{.Size}}", tag).strip())
        for tag in (SERVER_IMAGE, TRAINER_IMAGE)
    }
    for tag, size in sizes.items():
        print(f"{tag}: {size / 1e6:.0f} MB on base {base}")
    print(f"build seconds: {timings}")
    yield {"server": SERVER_IMAGE, "trainer": TRAINER_IMAGE}


@pytest.fixture
def run_id() -> Iterator[str]:
    """A unique prefix for this test's containers and volume; all removed afterwards."""
    rid = f"tw-test-{uuid.uuid4().hex[:8]}"
    yield rid
    names = docker("ps", "-aq", "--filter", f"name={rid}", check=False).split()
    if names:
        docker("rm", "--force", "--volumes", *names, check=False)
    docker("volume", "rm", "-f", f"{rid}-data", check=False)


def start_server(image: str, name: str, volume: str, port: int, metrics_port: int) -> None:
    docker(
        "run", "--detach", "--name", name, "--network", "host",
        "--volume", f"{volume}:/data",
        "--env", "TUNEWIRE_HOST=127.0.0.1",
        "--env", f"TUNEWIRE_PORT={port}",
        "--env", f"TUNEWIRE_METRICS_PORT={metrics_port}",
        image,
    )  # fmt: skip


def fetch_json(url: str, container: str, timeout: float = 60) -> dict:
    """GET `url` as JSON once the container answers; its logs in the failure otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return json.loads(reply.read())
        except OSError:
            if time.monotonic() > deadline:
                logs = docker("logs", container, check=False)
                raise AssertionError(f"{url} did not answer:\n{logs[-4000:]}") from None
            time.sleep(0.5)


def trial_table(target: str) -> list[tuple[int, str, str, dict, dict | None, int]]:
    client = TuningClient(target, timeout=30, retry_timeout=60)
    try:
        return [
            (t.id, t.state, t.worker_id, t.params, t.final_metrics, len(t.measurements))
            for t in client.list_trials(STUDY)
        ]
    finally:
        client.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_server_and_trainer_containers_finish_a_study_that_survives_restarts(
    images: dict[str, str], run_id: str, tmp_path: Path
) -> None:
    volume = f"{run_id}-data"
    docker("volume", "create", volume)
    port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    server = f"{run_id}-server"
    start_server(images["server"], server, volume, port, metrics_port)
    print(f"server healthy after {wait_healthy(server):.1f} s")
    assert docker("exec", server, "id", "-u").strip() != "0", "the server must not run as root"

    spec = tmp_path / "study.yaml"
    spec.write_text(STUDY_SPEC)
    spec.chmod(0o644)
    trainers = [f"{run_id}-trainer-{i}" for i in range(2)]
    start = time.monotonic()
    for name in trainers:
        docker(
            "run", "--detach", "--name", name, "--network", "host",
            "--volume", f"{spec}:/spec/study.yaml:ro",
            images["trainer"],
            "--server", target, "--study", STUDY, "--task", "digits-mlp",
            "--space", "/spec/study.yaml", "--devices", "cpu", "--progress", "log",
            # Half the study each, so that both containers certainly take part.
            "--worker-id", name, "--max-trials", str(TRIALS // 2),
        )  # fmt: skip
    for name in trainers:
        code = docker("wait", name, timeout=900).strip()
        logs = docker("logs", name, check=False)
        assert code == "0", f"{name} exited {code}:\n{logs[-4000:]}"
    print(f"{TRIALS} trials done by 2 trainer containers in {time.monotonic() - start:.1f} s")

    before = trial_table(target)
    assert len(before) == TRIALS
    assert all(state == "completed" and metrics for _, state, _, _, metrics, _ in before), before
    assert sorted(worker for _, _, worker, _, _, _ in before) == sorted(trainers * (TRIALS // 2))

    samples = scrape(metrics_port)
    trials_key = ("tunewire_trials", (("state", "completed"), ("study", STUDY)))
    assert samples[trials_key] == TRIALS
    assert samples[("tunewire_rpc_total", (("code", "OK"), ("method", "CompleteTrial")))] >= TRIALS
    assert samples[("tunewire_suggestion_seconds_count", ())] >= TRIALS

    # The dashboard runs from the server image (docker-compose.yml's `dashboard` service)
    # and shows the study the trainers finished.
    dashboard, dashboard_port = f"{run_id}-dashboard", free_port()
    docker(
        "run", "--detach", "--name", dashboard, "--network", "host",
        "--entrypoint", "tunewire", images["server"],
        "dashboard", "--server", target, "--host", "127.0.0.1", "--port", str(dashboard_port),
    )  # fmt: skip
    listed = fetch_json(f"http://127.0.0.1:{dashboard_port}/api/studies", dashboard)
    (shown,) = [s for s in listed["studies"] if s["name"] == STUDY]
    assert shown["best"]["trial"] in {tid for tid, *_ in before}, shown
    docker("rm", "--force", dashboard)

    # The same container restarted, then a new container on the same volume: all trials kept.
    docker("restart", server, timeout=120)
    print(f"restarted server healthy after {wait_healthy(server):.1f} s")
    assert trial_table(target) == before
    docker("rm", "--force", "--volumes", server)
    replacement = f"{run_id}-server-2"
    start_server(images["server"], replacement, volume, port, metrics_port)
    wait_healthy(replacement)
    assert trial_table(target) == before
    assert scrape(metrics_port)[trials_key] == TRIALS


@pytest.mark.postgres
def test_killing_one_of_two_replicas_does_not_stop_the_study(
    images: dict[str, str], run_id: str, pg_database: str
) -> None:
    """Two server containers on one PostgreSQL; trainers balance over both round-robin (the
    compose setup, with two addresses instead of one DNS name); one replica is killed
    mid-study and the trainers finish it on the other."""
    ports = [free_port() for _ in range(4)]
    replicas = [f"{run_id}-replica-{i}" for i in range(2)]
    for i, name in enumerate(replicas):
        docker(
            "run", "--detach", "--name", name, "--network", "host",
            "--env", "TUNEWIRE_HOST=127.0.0.1",
            "--env", f"TUNEWIRE_PORT={ports[i]}",
            "--env", f"TUNEWIRE_METRICS_PORT={ports[2 + i]}",
            "--env", f"TUNEWIRE_STORAGE={pg_database}",
            images["server"],
        )  # fmt: skip
    for name in replicas:
        wait_healthy(name)
    trials = 16
    spec = STUDY_SPEC.replace(f"max_trials: {TRIALS}", f"max_trials: {trials}")
    survivor = TuningClient(f"127.0.0.1:{ports[1]}", timeout=30, retry_timeout=60)
    survivor.create_study(STUDY, yaml.safe_load(spec))
    target = f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    trainers = [f"{run_id}-lb-trainer-{i}" for i in range(2)]
    for name in trainers:
        docker(
            "run", "--detach", "--name", name, "--network", "host", images["trainer"],
            "--server", target, "--study", STUDY, "--task", "digits-mlp",
            "--no-create-study", "--devices", "cpu", "--progress", "log", "--worker-id", name,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while len(survivor.list_trials(STUDY, ["completed"], measurements=False)) < 2:
        assert time.monotonic() < deadline, "no trial completed"
        time.sleep(0.2)
    # Freeze the trainers while the replicas' counters are read and one replica is killed:
    # their trials take about a second each, so without the freeze a slow scrape or docker
    # call could let them finish the whole study before the kill.
    for name in trainers:
        docker("pause", name)
    try:
        # Calls of the tuning service each replica answered (not the HEALTHCHECK's probes).
        served = [
            sum(
                v
                for (metric, labels), v in scrape(port).items()
                if metric == "tunewire_rpc_total" and ("method", "Check") not in labels
            )
            for port in ports[2:]
        ]
        docker("kill", replicas[0])
        killed_at = len(survivor.list_trials(STUDY, ["completed"], measurements=False))
    finally:
        for name in trainers:
            docker("unpause", name)
    for name in trainers:
        code = docker("wait", name, timeout=900).strip()
        assert code == "0", f"{name} exited {code}:\n{docker('logs', name, check=False)[-4000:]}"
    final = survivor.list_trials(STUDY)
    survivor.close()
    completed = [t for t in final if t.state == "completed"]
    print(f"replica killed after {killed_at} trials; {len(completed)} completed; RPCs {served}")
    assert len(completed) == trials
    assert killed_at < trials, "the study ended before the replica was killed"
    # Round robin: each replica answered calls before one of them was killed.
    assert all(count > 1 for count in served), served
