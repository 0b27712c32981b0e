"""The storage conformance suite on PostgreSQL (a database of this test run, emptied)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _truncate
from tests.server.storage.conformance import StorageConformance
from tunewire.server.storage.base import Storage
from tunewire.server.storage.sql import SqlStorage


class TestPostgresStorage(StorageConformance):
    @pytest.fixture
    def storage(self, pg_database: str) -> Iterator[Storage]:
        _truncate(pg_database)
        storage = SqlStorage(pg_database)
        yield storage
        storage.dispose()
