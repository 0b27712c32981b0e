"""Alembic migrations of the tunewire schema, applied when the server starts."""
