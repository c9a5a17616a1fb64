"""Schema migrations: ``storage/migrations/*.sql`` applied in lexical file order, once each.

Each applied file is recorded in ``schema_migrations`` with the sha256 of its text; an applied
file whose text has since changed is refused (migrations are append-only: add a new file
instead). The whole run holds a PostgreSQL advisory lock, so any number of workers can start
at the same time: one applies, the others wait and then find nothing left to do. Each file
runs in its own transaction together with its bookkeeping row, so a failing file leaves
nothing half-applied (which also means a file cannot use ``CREATE INDEX CONCURRENTLY``).

File ranges by owner: 0001-0099 engines, 0100-0199 lookup, 0200-0299 validate/apply,
0300-0399 lifecycle/guardrails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from pipeline.errors import ConfigError, QueryError
from storage.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: pg_advisory_lock key: the first 8 bytes of sha256("heal:migrate") as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"heal:migrate").digest()[:8], "big", signed=True)

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``*.sql`` file of ``directory`` in lexical order."""
    return [Migration(p.name, p.read_text()) for p in sorted(directory.glob("*.sql"))]


async def _apply_all(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
        applied = {row["name"]: row["checksum"] for row in rows}
        done: list[str] = []
        for migration in migrations:
            recorded = applied.get(migration.name)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise ConfigError(
                        f"migration {migration.name} was changed after it was applied "
                        f"(sha256 {recorded[:12]} applied, {migration.checksum[:12]} now); "
                        "migrations are append-only: restore the file and add a new one "
                        "(for a throwaway embedded database, delete $HEAL_HOME/pg)"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise QueryError(
                    f"migration {migration.name} failed: {exc}; nothing of it was applied",
                    str(getattr(exc, "sqlstate", "") or ""),
                ) from exc
            done.append(migration.name)
        return done
    finally:
        # The lock is also released if the connection dies; unlocking explicitly matters
        # because the pool keeps this connection open.
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


def migrate(db: Database, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the pending migrations of ``directory``; returns the names applied now.

    Raises ConfigError (an applied file was changed), QueryError (a file failed; it was rolled
    back), DatabaseUnavailable.
    """
    migrations = discover(directory)

    async def run(conn: asyncpg.Connection) -> list[str]:
        return await _apply_all(conn, migrations)

    done = db.run(run, timeout=600)
    if done or db.untyped:
        # e.g. the vector codec, now that the extension exists: created here, or by another
        # process after this pool's first connection was made (nothing left to apply here)
        db.reload_types()
    return done


def applied(db: Database) -> list[tuple[str, str]]:
    """(name, checksum) of every applied migration, in order; empty before the first run."""
    if db.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return []
    rows = db.fetch("SELECT name, checksum FROM schema_migrations ORDER BY name")
    return [(row["name"], row["checksum"]) for row in rows]
