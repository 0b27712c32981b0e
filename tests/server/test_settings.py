"""The server's settings: safe defaults (loopback; no unauthenticated server on the
network unless asked), and settings read from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunewire.server.settings import ServerSettings, SettingsError, is_loopback


def test_the_default_server_listens_on_loopback_only() -> None:
    settings = ServerSettings()
    assert settings.host == "127.0.0.1" and settings.metrics_host == "127.0.0.1"
    assert settings.check() == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "tunewire.example.org", ""])
def test_a_server_on_the_network_needs_a_token_or_an_explicit_choice(host: str) -> None:
    with pytest.raises(SettingsError, match="without a token"):
        ServerSettings(host=host).check()
    warnings = ServerSettings(host=host, allow_unauthenticated=True).check()
    assert any("without a token" in w for w in warnings)
    plain = ServerSettings(host=host, token="t").check()
    assert any("without TLS" in w for w in plain)
    assert ServerSettings(host=host, token="t", tls_cert="c", tls_key="k").check() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    assert ServerSettings(host=host).check() == []


def test_metrics_beyond_loopback_draw_a_warning() -> None:
    warnings = ServerSettings(metrics_port=9090, metrics_host="0.0.0.0").check()
    assert any("/metrics" in w and "no authentication" in w for w in warnings)


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(SettingsError, match="'text' or 'json'"):
        ServerSettings(log_format="xml").check()
    with pytest.raises(SettingsError, match="both --tls-cert and --tls-key"):
        ServerSettings(tls_cert="c").check()


def test_settings_from_the_environment() -> None:
    settings = ServerSettings.from_env(
        {
            "TUNEWIRE_HOST": "0.0.0.0",
            "TUNEWIRE_PORT": "7000",
            "TUNEWIRE_ALLOW_UNAUTHENTICATED": "true",
        }
    )
    assert (settings.host, settings.port, settings.allow_unauthenticated) == ("0.0.0.0", 7000, True)
    with pytest.raises(SettingsError, match="TUNEWIRE_PORT must be a whole number"):
        ServerSettings.from_env({"TUNEWIRE_PORT": "seven"})
    with pytest.raises(SettingsError, match="true or false"):
        ServerSettings.from_env({"TUNEWIRE_ALLOW_UNAUTHENTICATED": "maybe"})


def test_serve_refuses_the_network_without_a_token() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tunewire.server", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "--allow-unauthenticated" in done.stderr


@pytest.mark.parametrize(
    ("storage", "needle"),
    [
        ("mysql://root@127.0.0.1/test", "unsupported database URL 'mysql'"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot reach the database"),
    ],
)
def test_serve_explains_a_database_it_cannot_use_in_one_line(storage: str, needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tunewire.server", "--port", "0", "--storage", storage],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
