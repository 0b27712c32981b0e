"""The storage conformance suite on a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.storage.conformance import StorageConformance
from tunewire.server.storage.base import Storage
from tunewire.server.storage.sql import SqlStorage


class TestSqliteStorage(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        storage = SqlStorage(f"sqlite:///{tmp_path / 'conformance.db'}")
        yield storage
        storage.dispose()
