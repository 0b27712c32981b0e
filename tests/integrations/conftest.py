"""Fixtures of the integration tests: they run against the SQLite server, so the shared
`client` fixture (tests/conftest.py) connects to it."""

from __future__ import annotations

import pytest

from tunewire.server.app import RunningServer


@pytest.fixture
def server(sqlite_server: RunningServer) -> RunningServer:
    return sqlite_server
