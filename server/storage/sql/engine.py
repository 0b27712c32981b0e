"""The SQL database (SQLite by default, PostgreSQL for several replicas): its engine,
migrations and units of work, each one transaction, retried on transient conflicts.

Concurrency between threads, processes and replicas is handled by the database only:
- SQLite: every write transaction starts with BEGIN IMMEDIATE (one writer at a time), WAL.
- PostgreSQL: `lock_study` takes a transaction-scoped advisory lock per study for
  structural changes (new trials, retries, state); per-trial writes lock the trial row.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from tunewire.server.domain.errors import StorageUnavailable
from tunewire.server.storage.base import StudyStore
from tunewire.server.storage.sql.repository import PostgresStudyStore, SqliteStudyStore
from tunewire.server.storage.sql.statements import BEGIN_DEFERRED, BEGIN_IMMEDIATE

log = logging.getLogger(__name__)
T = TypeVar("T")


class UnsupportedDatabase(ValueError):
    """A database URL this server cannot use."""


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
DEFAULT_SQLITE_FILE = "tunewire.db"
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
RETRYABLE_PG_CODES = {"40001", "40P01"}
# The execution option that marks a connection's transaction read-only (SqlStorage.run).
_READ_ONLY = "tunewire_read_only"


def default_storage_url() -> str:
    """A SQLite file in the working directory."""
    return f"sqlite:///{os.path.abspath(DEFAULT_SQLITE_FILE)}"


def normalise_url(url: str) -> str:
    """Accepts postgres:// and postgresql:// URLs and selects the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class SqlStorage:
    """Owns the engine; runs each unit of work in one transaction, retrying conflicts.
    The store for the dialect (SQLite or PostgreSQL) is chosen here, once."""

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        """Opens the database at `url` and migrates it to the current schema.

        Raises:
            UnsupportedDatabase: a URL of another database than SQLite or PostgreSQL.
            StorageUnavailable: the database cannot be reached.
        """
        self.url = normalise_url(url or default_storage_url())
        if not self.url.startswith(("sqlite:", "postgresql")):
            raise UnsupportedDatabase(
                f"unsupported database URL {self.url.split(':', 1)[0]!r}: use "
                "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        self.engine = self._create_engine(self.url)
        # SQLite has one writer at a time. Queueing this process's transactions on a lock
        # avoids SQLite's busy handler, which sleeps between its retries; other
        # processes on the same file still coordinate through BEGIN IMMEDIATE.
        self._local_writer = threading.Lock() if self.url.startswith("sqlite") else None
        # Threads that keep a connection: thread id -> its connection (None: not yet made).
        self._kept: dict[int, Connection | None] = {}
        self._store = PostgresStudyStore if self.url.startswith("postgresql") else SqliteStudyStore
        if migrate:
            self.migrate()

    @property
    def single_writer(self) -> bool:
        """True when one transaction at a time can write the whole database (SQLite)."""
        return self._local_writer is not None

    @staticmethod
    def _create_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=16,
                max_overflow=48,
            )

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (see below).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives a killed process (not a power cut).
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:
                # A write transaction takes the file's write lock at once, so it never
                # fails half-way on a lock; a read-only one reads a snapshot (WAL) and
                # neither waits for writers nor makes them wait.
                read_only = conn.get_execution_options().get(_READ_ONLY, False)
                (BEGIN_DEFERRED if read_only else BEGIN_IMMEDIATE).execute(conn, {})

            return engine
        if url.startswith("postgresql"):
            return create_engine(url, pool_size=16, max_overflow=48)
        return create_engine(url, poolclass=NullPool)

    def migrate(self) -> None:
        """Applies Alembic migrations up to head (safe when replicas start together).

        Raises:
            StorageUnavailable: the database cannot be reached.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        try:
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except OperationalError as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StorageUnavailable(f"cannot reach the database {where}: {reason}") from exc

    def run(
        self, fn: Callable[[StudyStore], T], *, attempts: int = 8, read_only: bool = False
    ) -> T:
        """Runs fn in one transaction; commits on return, rolls back on exception.

        A `read_only` transaction must not write (fn raises NeedsWrite instead). On SQLite
        it then reads a snapshot without taking the write lock, so a long listing of a
        large study does not hold up every report behind it.

        Raises:
            StorageUnavailable: the database cannot be reached or stays locked.
        """
        for attempt in range(attempts):
            try:
                kept = None if read_only else self._kept_connection()
                if kept is not None:
                    return self._transaction(kept, fn, read_only=False)
                with self.engine.connect() as conn:
                    if read_only:
                        conn.execution_options(**{_READ_ONLY: True})
                    return self._transaction(conn, fn, read_only=read_only)
            except (OperationalError, DBAPIError) as exc:
                if not self._retryable(exc) or attempt == attempts - 1:
                    if isinstance(exc, OperationalError) or exc.connection_invalidated:
                        raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc
                    raise
                delay = min(0.5, 0.005 * 2**attempt) * (0.5 + random.random())
                log.info("retrying transaction after %s (attempt %d)", exc.orig, attempt + 1)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _transaction(
        self, conn: Connection, fn: Callable[[StudyStore], T], *, read_only: bool
    ) -> T:
        """fn in one transaction on conn. A SQLite write holds this process's writer lock
        for the transaction only, not for the pool's checkout and checkin: the lock bounds
        the throughput of the process."""
        writer = self._local_writer if self._local_writer is not None and not read_only else None
        with writer or nullcontext(), conn.begin():
            return fn(self._store(conn, read_only=read_only))

    def keep_connection_on_this_thread(self) -> None:
        """Write transactions on this thread reuse one connection instead of checking one
        out of the pool for each: for the threads that run many short transactions one
        after another (the server's RPC threads, and its event loop on SQLite), where the
        checkout and checkin cost a quarter of a report's time. The connection is the
        thread's until `dispose`; read-only transactions still use the pool."""
        self._kept.setdefault(threading.get_ident(), None)

    def _kept_connection(self) -> Connection | None:
        """This thread's kept connection (made or remade when needed), or None."""
        ident = threading.get_ident()
        if ident not in self._kept:
            return None
        conn = self._kept[ident]
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept[ident] = self.engine.connect()
        return conn

    @staticmethod
    def _retryable(exc: DBAPIError) -> bool:
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code in RETRYABLE_PG_CODES:
            return True
        message = str(exc.orig).lower()
        return "database is locked" in message or exc.connection_invalidated

    def dispose(self) -> None:
        for ident, conn in list(self._kept.items()):
            if conn is not None:
                conn.close()
                self._kept[ident] = None
        self.engine.dispose()
