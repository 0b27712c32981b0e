"""The server's settings: one typed object, each field a `tunewire serve` flag and a
TUNEWIRE_<FIELD> environment variable (the README lists them with their defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ServerSettings:
    """Server configuration; every field can be set by a flag or a TUNEWIRE_* variable."""

    host: str = field(default="0.0.0.0", metadata={"help": "address to listen on"})
    port: int = field(default=50051, metadata={"help": "gRPC port (0 = any free port)"})
    storage: str = field(
        default="", metadata={"help": "database URL (default: sqlite file ./tunewire.db)"}
    )
    tls_cert: str = field(default="", metadata={"help": "PEM certificate file (enables TLS)"})
    tls_key: str = field(default="", metadata={"help": "PEM private key file"})
    token: str = field(default="", metadata={"help": "bearer token clients must send"})
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
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TUNEWIRE_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = int(raw) if f.type in ("int", int) else raw
        return cls(**values)
