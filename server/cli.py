"""`tunewire serve`: runs the server with flags from `ServerSettings` (each also a
TUNEWIRE_<FIELD> variable). Registered as the `serve` command of the `tunewire` program."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

HELP = "run the suggestion server"


def build_parser() -> argparse.ArgumentParser:
    from tunewire.server.settings import ServerSettings

    parser = argparse.ArgumentParser(prog="tunewire serve", description=HELP)
    for f in fields(ServerSettings):
        flag = "--" + f.name.replace("_", "-")
        help_text = (
            f"{f.metadata.get('help', '')} (default {f.default!r}; env TUNEWIRE_{f.name.upper()})"
        )
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            kind = int if f.type in ("int", int) else str
            parser.add_argument(flag, type=kind, default=None, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tunewire.server.app import serve
    from tunewire.server.domain.errors import StorageUnavailable
    from tunewire.server.logs import configure_logging
    from tunewire.server.settings import ServerSettings, SettingsError
    from tunewire.server.storage.sql.engine import UnsupportedDatabase

    args = build_parser().parse_args(argv)
    try:
        settings = ServerSettings.from_env()
        for f in fields(ServerSettings):
            value = getattr(args, f.name, None)
            if value is not None:
                setattr(settings, f.name, value)
        settings.check()
        configure_logging(settings.log_format)
        serve(settings)
    except (SettingsError, UnsupportedDatabase, StorageUnavailable, OSError) as exc:
        print(f"tunewire serve: {exc}", file=sys.stderr)
        return 2
    return 0
