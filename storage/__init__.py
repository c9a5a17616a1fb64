"""PostgreSQL/pgvector and SQLite repositories, migrations and the embedded engines."""
