"""Storage of studies, trials and measurements in SQLite or PostgreSQL (SQLAlchemy)."""
