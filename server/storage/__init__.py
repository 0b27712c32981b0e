"""Storage of studies, trials and measurements: the `Storage`/`StudyStore` protocols
(base.py) and their SQL implementation for SQLite and PostgreSQL (sql/)."""
