"""SQL storage (SQLAlchemy Core; Alembic migrations): SQLite and PostgreSQL."""

from tunewire.server.storage.sql.engine import SqlStorage, default_storage_url, normalise_url

__all__ = ["SqlStorage", "default_storage_url", "normalise_url"]
