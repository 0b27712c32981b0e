"""The dashboard's settings: flags over environment variables, loopback by default, and no
dashboard open to the network without a token unless asked for."""

from __future__ import annotations

import pytest

from tunewire.dashboard.settings import SettingsError, is_loopback, parse_settings


def test_defaults_listen_on_loopback_and_variables_set_the_defaults() -> None:
    s = parse_settings([], {})
    assert (s.host, s.port, s.server, s.ui_token) == ("127.0.0.1", 8080, "localhost:50051", "")
    env = {
        "TUNEWIRE_SERVER": "db:1",
        "TUNEWIRE_TOKEN": "t",
        "TUNEWIRE_DASHBOARD_PORT": "9000",
        "TUNEWIRE_DASHBOARD_TOKEN": "u",
        "TUNEWIRE_TLS": "true",
    }
    s = parse_settings(["--port", "9100"], env)
    assert (s.server, s.token, s.port, s.ui_token, s.tls) == ("db:1", "t", 9100, "u", True)


def test_another_address_needs_a_browser_token_or_an_explicit_opt_out() -> None:
    with pytest.raises(SettingsError, match="--ui-token"):
        parse_settings(["--host", "0.0.0.0"], {})
    assert parse_settings(["--host", "0.0.0.0", "--ui-token", "x"], {}).ui_token == "x"
    assert parse_settings(["--host", "0.0.0.0", "--allow-unauthenticated"], {}).host == "0.0.0.0"
    with pytest.raises(SettingsError, match="poll"):
        parse_settings(["--poll-seconds", "0"], {})
    with pytest.raises(SettingsError, match="does not parse"):
        parse_settings([], {"TUNEWIRE_DASHBOARD_PORT": "eighty"})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("dashboard.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
