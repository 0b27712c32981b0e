"""The server's settings: one typed object, each field a `tunewire serve` flag and a
TUNEWIRE_<FIELD> environment variable (the README lists them with their defaults)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ServerSettings:
    """Server configuration; every field can be set by a flag or a TUNEWIRE_* variable."""

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to listen on (0.0.0.0: every interface; needs --token)"},
    )
    port: int = field(default=50051, metadata={"help": "gRPC port (0 = any free port)"})
    storage: str = field(
        default="", metadata={"help": "database URL (default: sqlite file ./tunewire.db)"}
    )
    tls_cert: str = field(default="", metadata={"help": "PEM certificate file (enables TLS)"})
    tls_key: str = field(default="", metadata={"help": "PEM private key file"})
    token: str = field(default="", metadata={"help": "bearer token clients must send"})
    allow_unauthenticated: bool = field(
        default=False,
        metadata={"help": "listen beyond loopback without a token (a trusted network only)"},
    )
    threads: int = field(
        default=32, metadata={"help": "threads for calls that do not run on the event loop"}
    )
    metrics_port: int = field(
        default=0, metadata={"help": "Prometheus metrics HTTP port (0 = off)"}
    )
    metrics_host: str = field(
        default="127.0.0.1", metadata={"help": "address the metrics endpoint listens on"}
    )
    max_message_bytes: int = field(
        default=4 * 1024 * 1024, metadata={"help": "largest request accepted"}
    )
    log_format: str = field(default="text", metadata={"help": "log lines: text or json"})
    torch_threads: int = field(
        default=0,
        metadata={"help": "torch threads for model fitting (0 = torch's default: all cores)"},
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Defaults overridden by the TUNEWIRE_<FIELD> variables that are set.

        Raises:
            SettingsError: a variable that does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"TUNEWIRE_{f.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if f.type in ("bool", bool):
                if raw.lower() not in TRUE | FALSE:
                    raise SettingsError(f"{name} must be true or false, got {raw!r}")
                values[f.name] = raw.lower() in TRUE
            elif f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
            else:
                values[f.name] = raw
        return cls(**values)

    def check(self) -> list[str]:
        """Refuses settings that cannot work, and a server anyone on the network could use
        without a token (unless `allow_unauthenticated` says so); returns warnings about
        what it allows.

        Raises:
            SettingsError: what to change.
        """
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log format must be 'text' or 'json', got {self.log_format!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("TLS needs both --tls-cert and --tls-key")
        warnings = []
        if not is_loopback(self.host):
            if not self.token and not self.allow_unauthenticated:
                raise SettingsError(
                    f"refusing to listen on {self.host} without a token: anyone who can reach "
                    "it could read and change every study. Set --token (or TUNEWIRE_TOKEN), "
                    "listen on 127.0.0.1, or pass --allow-unauthenticated on a trusted network"
                )
            if not self.token:
                warnings.append(
                    f"listening on {self.host} without a token (--allow-unauthenticated)"
                )
            elif not self.tls_cert:
                warnings.append(
                    f"listening on {self.host} with a token but without TLS: the token "
                    "crosses the network in plain text; add --tls-cert and --tls-key"
                )
        if self.metrics_port and not is_loopback(self.metrics_host):
            warnings.append(
                f"/metrics on {self.metrics_host}:{self.metrics_port} has no authentication "
                "(it shows study names and trial counts)"
            )
        return warnings


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A setting that cannot be used; the message says what to change."""


def is_loopback(host: str) -> bool:
    """Whether `host` is an address (or name) of this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name, or '' / 0.0.0.0 for every interface
