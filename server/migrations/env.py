"""Alembic environment: runs migrations on the connection the server hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from tunewire.server.storage.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait and then find head.
        connection.execute(text("SELECT pg_advisory_xact_lock(7415921)"))
    context.run_migrations()
