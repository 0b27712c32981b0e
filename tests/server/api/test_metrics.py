"""The Prometheus endpoint of a real server: RPC counts by method and code, latency
histograms, suggestion latency, trials per study and state, scraped over HTTP."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SIMPLE_SPEC
from tunewire.client import TunewireClientError, TuningClient
from tunewire.server.app import run_in_background


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_rpcs_codes_latency_and_trials(tmp_path: Path) -> None:
    port = free_port()
    srv = run_in_background(f"sqlite:///{tmp_path / 'm.db'}", metrics_port=port, token="t0k")
    client = TuningClient(srv.target, token="t0k", timeout=30, retry_timeout=2)
    study = f"metrics-{uuid.uuid4().hex[:8]}"
    try:
        before = scrape(port)
        client.create_study(study, SIMPLE_SPEC)
        first, _active = client.suggest(study, worker_id="w1", count=2)
        first.report(0, {"loss": 1.0})
        first.complete({"loss": 1.0})
        with pytest.raises(TunewireClientError) as err:
            client.get_study(f"{study}-missing")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        anonymous = TuningClient(srv.target, retry_timeout=1)
        with pytest.raises(TunewireClientError):
            anonymous.list_studies()
        anonymous.close()
        after = scrape(port)
    finally:
        client.close()
        srv.stop(0)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("tunewire_rpc_total", method="CreateStudy", code="OK") == 1
    assert delta("tunewire_rpc_total", method="SuggestTrials", code="OK") == 1
    assert delta("tunewire_rpc_total", method="CompleteTrial", code="OK") == 1
    assert delta("tunewire_rpc_total", method="GetStudy", code="NOT_FOUND") == 1
    assert delta("tunewire_rpc_total", method="ListStudies", code="UNAUTHENTICATED") == 1
    assert delta("tunewire_rpc_seconds_count", method="SuggestTrials") == 1
    assert delta("tunewire_rpc_seconds_bucket", method="SuggestTrials", le="+Inf") == 1
    assert delta("tunewire_suggestion_seconds_count") == 1
    assert delta("tunewire_suggestion_seconds_sum") > 0
    # Trials per study and state, read from the database at scrape time.
    assert value(after, "tunewire_trials", study=study, state="completed") == 1
    assert value(after, "tunewire_trials", study=study, state="active") == 1
    assert value(after, "tunewire_trials", study=study, state="lost") == 0
    assert value(after, "tunewire_storage_up") == 1


def test_two_servers_in_one_process_each_serve_metrics(tmp_path: Path) -> None:
    """A second server with its own metrics port and database (tests, benchmarks) adds its
    studies to the same gauge instead of failing on a duplicate registration."""
    ports = [free_port(), free_port()]
    servers = [
        run_in_background(f"sqlite:///{tmp_path / f'{i}.db'}", metrics_port=p)
        for i, p in enumerate(ports)
    ]
    names = [f"two-{i}-{uuid.uuid4().hex[:8]}" for i in range(2)]
    try:
        for srv, name in zip(servers, names, strict=True):
            c = TuningClient(srv.target, retry_timeout=2)
            c.create_study(name, SIMPLE_SPEC)
            c.close()
        for port in ports:
            samples = scrape(port)
            for name in names:
                assert (
                    "tunewire_trials",
                    (("state", "completed"), ("study", name)),
                ) in samples
    finally:
        for srv in servers:
            srv.stop(0)
