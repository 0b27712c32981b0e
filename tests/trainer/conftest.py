"""Fixtures of the trainer tests: a client of the SQLite server the worker tests run against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tunewire.client import TuningClient
from tunewire.server.app import RunningServer


@pytest.fixture
def client(sqlite_server: RunningServer) -> Iterator[TuningClient]:
    c = TuningClient(sqlite_server.target, timeout=30, retry_timeout=5)
    try:
        yield c
    finally:
        c.close()
