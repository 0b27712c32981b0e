"""`tunewire dashboard`: serves the dashboard (uvicorn) with flags from `DashboardSettings`.
Registered as the `dashboard` command of the `tunewire` program."""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass

import uvicorn

from tunewire.dashboard.app import guarded
from tunewire.dashboard.settings import DashboardSettings, SettingsError, parse_settings

log = logging.getLogger(__name__)


def bind(settings: DashboardSettings) -> socket.socket:
    """The listening socket (bound here, so that port 0 can be reported)."""
    family = socket.AF_INET6 if ":" in settings.host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host.strip("[]"), settings.port))
    return sock


def url_of(settings: DashboardSettings, sock: socket.socket) -> str:
    host = settings.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{sock.getsockname()[1]}/"


def _server(settings: DashboardSettings) -> uvicorn.Server:
    config = uvicorn.Config(
        guarded(settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        # A page's request for changes is short; a slow client must not hold a worker.
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


@dataclass
class RunningDashboard:
    """A dashboard serving in a thread of this process (tests, benchmarks)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def run_in_background(settings: DashboardSettings) -> RunningDashboard:
    """Starts the dashboard on a thread; returns once it accepts connections."""
    sock = bind(settings)
    server = _server(settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        thread.join(0.02)
    return RunningDashboard(url_of(settings, sock), server, thread)


# glibc's mallopt parameter for the number of malloc arenas.
M_ARENA_MAX = -8


def few_malloc_arenas(arenas: int = 2) -> bool:
    """Limits glibc to `arenas` malloc arenas, unless MALLOC_ARENA_MAX says otherwise.

    The dashboard builds and encodes a large study's payload in worker threads; by
    default glibc gives threads arenas of their own (up to 8 per core), whose freed
    memory stays mapped, and the process's resident size grows with the thread count
    rather than with what it holds. Returns whether the limit was set (glibc only).
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    few_malloc_arenas()
    try:
        settings = parse_settings(argv)
        sock = bind(settings)
    except (SettingsError, OSError) as exc:
        print(f"tunewire dashboard: {exc}", file=sys.stderr)
        return 2
    note = " (open it once with ?token=YOUR_UI_TOKEN)" if settings.ui_token else ""
    print(
        f"tunewire dashboard on {url_of(settings, sock)}{note}, reading {settings.server}",
        flush=True,
    )
    _server(settings).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
