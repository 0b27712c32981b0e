"""The deployment files offline: Kubernetes manifests against the API schemas (when
kubernetes-validate is installed) and their wiring, docker-compose.yml's wiring (and
`docker-compose config` when a compose is installed), the Dockerfile's targets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes with gRPC probes on by default (1.24 beta, 1.27 GA) that we claim.
K8S_VERSIONS = ("1.27.0", "1.30.0")


def k8s_resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def one(resources: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        r
        for r in resources
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_match_the_api_schemas(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    for resource in k8s_resources():
        # strict: unknown fields (typos) are errors too
        kv.validate(resource, version, strict=True)


def test_k8s_server_replicas_service_and_secret_are_wired() -> None:
    resources = k8s_resources()
    deployment = one(resources, "Deployment", "tunewire-server")
    service = one(resources, "Service", "tunewire-server")
    secret = one(resources, "Secret")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels
    assert service["spec"]["selector"].items() <= labels
    # Headless: DNS returns every replica, so the client balances round-robin itself.
    assert service["spec"]["clusterIP"] == "None"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (server,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in server["env"]}
    grpc_port = int(env["TUNEWIRE_PORT"]["value"])
    assert {p["port"] for p in service["spec"]["ports"]} >= {grpc_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == grpc_port, probe
    for var in ("TUNEWIRE_TOKEN", "TUNEWIRE_STORAGE"):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert secret["stringData"]["storage-url"].startswith("postgresql://")


def test_k8s_trainers_request_gpus_and_reach_every_replica() -> None:
    resources = k8s_resources()
    job, service = one(resources, "Job"), one(resources, "Service", "tunewire-server")
    secret = one(resources, "Secret")
    (trainer,) = job["spec"]["template"]["spec"]["containers"]
    assert int(trainer["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert job["spec"]["parallelism"] >= 2
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    name = service["metadata"]["name"]
    assert f"--server=dns:///{name}:{grpc_port}" in trainer["args"]
    assert any(a.startswith("--devices=cuda") for a in trainer["args"])
    (token,) = trainer["env"]
    assert token["name"] == "TUNEWIRE_TOKEN"
    assert token["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_k8s_dashboard_reads_every_replica_with_its_tokens_and_is_probed() -> None:
    resources = k8s_resources()
    deployment = one(resources, "Deployment", "tunewire-dashboard")
    service = one(resources, "Service", "tunewire-dashboard")
    server_service = one(resources, "Service", "tunewire-server")
    secret = one(resources, "Secret")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels
    assert service["spec"]["selector"].items() <= labels
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (dashboard,) = pod["spec"]["containers"]
    assert dashboard["image"] == server_service_image(resources)
    assert dashboard["command"] == ["tunewire", "dashboard"]
    env = {e["name"]: e for e in dashboard["env"]}
    grpc_port = next(p["port"] for p in server_service["spec"]["ports"] if p["name"] == "grpc")
    name = server_service["metadata"]["name"]
    assert env["TUNEWIRE_SERVER"]["value"] == f"dns:///{name}:{grpc_port}"
    # Listening beyond loopback, so browsers must give a token; the server's is its own.
    assert env["TUNEWIRE_DASHBOARD_HOST"]["value"] == "0.0.0.0"
    for var, key in (("TUNEWIRE_TOKEN", "token"), ("TUNEWIRE_DASHBOARD_TOKEN", "dashboard-token")):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] == key
        assert key in secret["stringData"]
    http_port = int(env["TUNEWIRE_DASHBOARD_PORT"]["value"])
    assert dashboard["ports"][0]["containerPort"] == http_port
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert dashboard[probe]["httpGet"]["path"] == "/healthz", probe
    assert dashboard["securityContext"]["readOnlyRootFilesystem"] is True


def server_service_image(resources: list[dict[str, Any]]) -> str:
    """The image the servers run (the dashboard runs from it too)."""
    server = one(resources, "Deployment", "tunewire-server")
    return str(server["spec"]["template"]["spec"]["containers"][0]["image"])


def dockerfile_stages() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    stages: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = m.group(1)
            stages[current] = ""
        elif current:
            stages[current] += line + "\n"
    return stages


def test_dockerfile_targets_run_unprivileged_with_healthcheck_and_volume() -> None:
    stages = dockerfile_stages()
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.MULTILINE)
    assert re.search(r"^ARG TRAINER_BASE_IMAGE=nvidia/cuda:", text, re.MULTILINE)
    server, trainer = stages["server"], stages["trainer"]
    for body in (server, trainer):
        assert re.search(r"^USER tunewire$", body, re.MULTILINE)
        assert "pip install" not in body, "the final stages install nothing"
    assert "HEALTHCHECK" in server and "tunewire-healthcheck" in server
    assert 'VOLUME ["/data"]' in server and "EXPOSE 50051 9090" in server
    assert 'ENTRYPOINT ["tunewire", "serve"]' in server
    assert 'ENTRYPOINT ["tunewire", "train"]' in trainer


def test_compose_has_postgres_two_replicas_and_round_robin_trainers() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    stages = dockerfile_stages()
    assert services["server"]["build"]["target"] in stages
    assert services["trainer"]["build"]["target"] in stages
    assert services["server"]["deploy"]["replicas"] == 2
    assert services["server"]["environment"]["TUNEWIRE_STORAGE"].startswith("postgresql://")
    assert "@postgres:" in services["server"]["environment"]["TUNEWIRE_STORAGE"]
    assert "postgres" in services["server"]["depends_on"]
    assert "--server=dns:///server:50051" in services["trainer"]["command"]
    assert services["trainer"]["restart"] == "on-failure"


def test_compose_dashboard_reads_the_replicas_and_is_published_on_loopback_only() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    dashboard, server = compose["services"]["dashboard"], compose["services"]["server"]
    assert dashboard["image"] == server["image"]  # the server image runs it
    assert dashboard["entrypoint"] == ["tunewire", "dashboard"]
    env = dashboard["environment"]
    assert env["TUNEWIRE_SERVER"] == "dns:///server:50051"
    assert env["TUNEWIRE_TOKEN"].startswith("${TUNEWIRE_TOKEN")
    assert env["TUNEWIRE_DASHBOARD_TOKEN"].startswith("${TUNEWIRE_DASHBOARD_TOKEN:?")
    port = env["TUNEWIRE_DASHBOARD_PORT"]
    assert dashboard["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "/healthz" in " ".join(dashboard["healthcheck"]["test"])
    assert dashboard["depends_on"]["server"]["condition"] == "service_healthy"


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_file_is_valid_for_compose() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no docker-compose or docker compose plugin installed")
    env = {**os.environ, "TUNEWIRE_TOKEN": "t", "TUNEWIRE_DASHBOARD_TOKEN": "d"}
    done = subprocess.run(
        [*command, "--file", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
