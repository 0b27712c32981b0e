"""The shared fixtures' own promises (tests/conftest.py)."""

from __future__ import annotations

import socket
import time

import pytest

from tests import conftest


def test_an_unreachable_postgresql_is_skipped_quickly_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port that accepts connections but never answers, as a firewalled address does:
    the check gives up after its connect timeout and names the URL and the variable."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/postgres"
        monkeypatch.setattr(conftest, "PG_ADMIN_URL", url)
        started = time.monotonic()
        message = conftest.pg_unreachable()
        waited = time.monotonic() - started
    assert message is not None
    assert waited < conftest.PG_CONNECT_TIMEOUT_S + 5
    assert f"127.0.0.1:{port}/postgres" in message and "TUNEWIRE_TEST_PG" in message
    assert "hunter2" not in message
