"""The dashboard's HTTP side against a real server: the JSON the pages read, a server that
is down (a clear 503, recovery when it is back), a server with a token (the dashboard
sends its own), and the read-only, loopback-only defaults."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.seeding import PROBE
from tunewire.dashboard.cli import RunningDashboard, few_malloc_arenas, run_in_background
from tunewire.dashboard.follow import MIN_REFRESH_SECONDS
from tunewire.dashboard.settings import DashboardSettings
from tunewire.server.app import RunningServer
from tunewire.server.app import run_in_background as run_server


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_the_studies_and_a_study_as_the_pages_read_them(dashboard: RunningDashboard) -> None:
    status, studies = get(dashboard.url + "api/studies")
    assert status == 200
    by_name = {s["name"]: s for s in studies["studies"]}
    mlp = by_name["mlp"]
    assert mlp["counts"]["lost"] == 1 and mlp["counts"]["failed"] == 1 and mlp["updated"] > 0
    assert mlp["best"]["metric"] == "val_loss" and mlp["best"]["value"] > 0
    status, study = get(dashboard.url + "api/studies/mlp")
    assert status == 200 and study["study"]["name"] == "mlp"
    trials = {t["id"]: t for t in study["trials"]}
    assert len(trials) == mlp["trials"]
    assert {t.get("worker") for t in trials.values()} >= {"gpu-0", PROBE}
    stops = [t["stop"] for t in trials.values() if "stop" in t]
    assert stops and all(s["rule"] == "successive_halving" for s in stops)
    assert study["spec"]["early_stopping"]["settings"]["reduction_factor"] == 2
    assert set(study["curves"]) == {"val_loss"}
    status, changes = get(dashboard.url + f"api/studies/mlp/changes?since={study['version']}")
    assert status == 200 and changes["trials"] == [] and changes["epoch"] == study["epoch"]
    status, pareto = get(dashboard.url + "api/studies/pareto")
    assert 0 < len(pareto["pareto"]) < len(pareto["trials"])


def test_unknown_studies_and_bad_requests_get_a_message(dashboard: RunningDashboard) -> None:
    assert get(dashboard.url + "api/studies/nope")[0] == 404
    status, body = get(dashboard.url + "api/studies/" + urllib.request.quote(PROBE))
    assert status == 404 and "invalid" in body["error"]
    assert get(dashboard.url + "api/studies/mlp/changes?since=x")[0] == 400
    assert get(dashboard.url + "api/studies", method="POST")[0] == 405
    assert get(dashboard.url + "api/studies", headers={"host": "evil.example"})[0] == 421
    assert get(dashboard.url + "healthz")[0] == 200


def test_a_server_that_is_down_is_a_503_with_a_message_and_the_dashboard_recovers(
    tmp_path: Path,
) -> None:
    server = run_server(f"sqlite:///{tmp_path / 'down.db'}")
    port = server.port
    server.stop(0)
    running = run_in_background(DashboardSettings(server=f"127.0.0.1:{port}", port=0))
    try:
        status, body = get(running.url + "api/studies")
        assert status == 503 and body["kind"] == "unavailable"
        assert f"127.0.0.1:{port}" in body["error"] and "Traceback" not in body["error"]
        again = run_server(f"sqlite:///{tmp_path / 'down.db'}", port=port)
        try:
            assert get(running.url + "api/studies") == (200, {"poll_seconds": 1.0, "studies": []})
        finally:
            again.stop(0)
    finally:
        running.stop()


def test_with_a_server_token_the_dashboard_uses_its_own(tmp_path: Path) -> None:
    server: RunningServer = run_server(f"sqlite:///{tmp_path / 'token.db'}", token="s3cret")
    try:
        good = run_in_background(DashboardSettings(server=server.target, token="s3cret", port=0))
        bad = run_in_background(DashboardSettings(server=server.target, token="wrong", port=0))
        try:
            assert get(good.url + "api/studies")[0] == 200
            status, body = get(bad.url + "api/studies")
            assert status == 502 and "UNAUTHENTICATED" in body["error"]
        finally:
            good.stop()
            bad.stop()
    finally:
        server.stop(0)


def test_a_browser_token_guards_every_page_but_the_probe(seeded: RunningServer) -> None:
    running = run_in_background(DashboardSettings(server=seeded.target, port=0, ui_token="ui-t"))
    try:
        assert get(running.url + "api/studies")[0] == 401
        assert get(running.url)[0] == 401
        assert get(running.url + "api/studies", headers={"authorization": "Bearer ui-t"})[0] == 200
        assert get(running.url + "healthz")[0] == 200
    finally:
        running.stop()


@pytest.mark.parametrize("path", ["static/app.js", "static/plotly.min.js", "static/style.css"])
def test_static_files_come_from_the_package(dashboard: RunningDashboard, path: str) -> None:
    with urllib.request.urlopen(dashboard.url + path, timeout=30) as r:
        assert r.status == 200 and len(r.read()) > 1000


def test_a_study_deleted_while_followed_is_missing_and_forgotten(tmp_path: Path) -> None:
    from tests.dashboard.seeding import MULTI
    from tunewire.client import TuningClient

    server = run_server(f"sqlite:///{tmp_path / 'deleted.db'}")
    running = run_in_background(DashboardSettings(server=server.target, port=0))
    try:
        with TuningClient(server.target) as client:
            client.create_study("gone", MULTI)
            assert get(running.url + "api/studies/gone")[0] == 200
            client.delete_study("gone")
        time.sleep(MIN_REFRESH_SECONDS + 0.1)  # asked sooner, the page is answered from memory
        status, body = get(running.url + "api/studies/gone/changes?since=0")
        assert status == 404 and "gone" in body["error"]
    finally:
        running.stop()
        server.stop(0)


def test_the_dashboard_limits_malloc_arenas_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # glibc (this machine's libc) takes the limit; a MALLOC_ARENA_MAX the user set wins.
    assert few_malloc_arenas()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not few_malloc_arenas()
