"""The dashboard's settings: one typed object, each field a `tunewire dashboard` flag whose
default comes from an environment variable (the README lists them)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

TRUE = {"1", "true", "yes", "on"}


class SettingsError(Exception):
    """Settings that cannot work; the message says what to change."""


@dataclass(frozen=True)
class DashboardSettings:
    """Where the tunewire server is, how to reach it, and where the dashboard listens."""

    server: str = "localhost:50051"
    # The dashboard's own bearer token for the server; never sent to browsers.
    token: str = ""
    tls: bool = False
    tls_ca: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # When set, browsers must present it (see `tunewire.dashboard.access`).
    ui_token: str = ""
    allow_unauthenticated: bool = False
    # How often an open page asks for changes; a live report shows within about twice this.
    poll_seconds: float = 1.0

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def check(self) -> None:
        """Refuses a dashboard anyone on the network could open without a token.

        Raises:
            SettingsError: what to change.
        """
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be 0-65535, got {self.port}")
        if not 0.2 <= self.poll_seconds <= 60:
            raise SettingsError(f"--poll-seconds must be 0.2-60, got {self.poll_seconds:g}")
        if not self.loopback and not self.ui_token and not self.allow_unauthenticated:
            raise SettingsError(
                f"--host {self.host} lets other machines open the dashboard: set --ui-token "
                "(or TUNEWIRE_DASHBOARD_TOKEN) for browsers to present, or pass "
                "--allow-unauthenticated on a trusted network"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    d = DashboardSettings()
    p = argparse.ArgumentParser(
        prog="tunewire dashboard",
        description="a read-only web UI of a tunewire server (studies, trials, workers, live)",
    )
    p.add_argument(
        "--server",
        default=env.get("TUNEWIRE_SERVER", d.server),
        help="tunewire server host:port, or dns:///name:port for replicas (env TUNEWIRE_SERVER)",
    )
    p.add_argument(
        "--token",
        default=env.get("TUNEWIRE_TOKEN", ""),
        help="the dashboard's bearer token for the server (env TUNEWIRE_TOKEN)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        default=env.get("TUNEWIRE_TLS", "").lower() in TRUE,
        help="connect to the server with TLS (env TUNEWIRE_TLS)",
    )
    p.add_argument(
        "--tls-ca",
        default=env.get("TUNEWIRE_TLS_CA", ""),
        help="CA certificate PEM of the server's TLS (env TUNEWIRE_TLS_CA)",
    )
    p.add_argument(
        "--host",
        default=env.get("TUNEWIRE_DASHBOARD_HOST", d.host),
        help="address to listen on (default loopback; env TUNEWIRE_DASHBOARD_HOST)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env.get("TUNEWIRE_DASHBOARD_PORT", d.port)),
        help="HTTP port (0: any free port; env TUNEWIRE_DASHBOARD_PORT)",
    )
    p.add_argument(
        "--ui-token",
        default=env.get("TUNEWIRE_DASHBOARD_TOKEN", ""),
        help="a token browsers must present: open http://HOST:PORT/?token=... once "
        "(env TUNEWIRE_DASHBOARD_TOKEN)",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=env.get("TUNEWIRE_DASHBOARD_ALLOW_UNAUTHENTICATED", "").lower() in TRUE,
        help="listen beyond loopback without --ui-token (a trusted network only)",
    )
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=float(env.get("TUNEWIRE_DASHBOARD_POLL_SECONDS", d.poll_seconds)),
        help="how often open pages ask for changes (env TUNEWIRE_DASHBOARD_POLL_SECONDS)",
    )
    return p


def parse_settings(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> DashboardSettings:
    """Settings from flags, their defaults from the environment.

    Raises:
        SettingsError: a variable that does not parse, or settings that cannot work.
    """
    try:
        args = build_parser(environ).parse_args(argv)
    except ValueError as exc:  # an int/float variable that does not parse
        raise SettingsError(f"an environment variable does not parse: {exc}") from None
    settings = DashboardSettings(**vars(args))
    settings.check()
    return settings
