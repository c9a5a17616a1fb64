"""storage.db.Database against the real (embedded or $HEAL_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from pipeline.errors import ConfigError, DatabaseUnavailable, QueryError
from storage.db import Database, mask_url
from storage.migrate import migrate


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate(database)  # creates the vector extension
    yield database
    database.close()


@pytest.fixture
def table(db: Database) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, note text, v vector(3))")
    return name


def test_statements_round_trip(db: Database, table: str) -> None:
    # Given a table, when rows are written and read through each call shape
    assert db.execute(f"INSERT INTO {table} (id, note) VALUES ($1, $2)", 1, "one") == "INSERT 0 1"
    db.executemany(f"INSERT INTO {table} (id, note) VALUES ($1, $2)", [(2, "two"), (3, "three")])
    # Then every read sees them
    assert [r["note"] for r in db.fetch(f"SELECT note FROM {table} ORDER BY id")] == [
        "one",
        "two",
        "three",
    ]
    row = db.fetchrow(f"SELECT id, note FROM {table} WHERE id = $1", 2)
    assert row is not None and row["note"] == "two"
    assert db.fetchrow(f"SELECT id FROM {table} WHERE id = 99") is None
    assert db.fetchval(f"SELECT count(*) FROM {table}") == 3


def test_vector_codec_on_every_pooled_connection(db: Database, table: str) -> None:
    # Given vectors written from several threads at once (so several pooled connections)
    def write(i: int) -> None:
        db.execute(f"INSERT INTO {table} (id, v) VALUES ($1, $2)", i, [float(i), 0.5, -1.0])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then each one reads back as a vector, and distance operators work on them
    values = db.fetch(f"SELECT id, v FROM {table} ORDER BY id")
    assert [r["v"].to_list() for r in values] == [[float(i), 0.5, -1.0] for i in range(8)]
    nearest = db.fetchval(f"SELECT id FROM {table} ORDER BY v <-> $1 LIMIT 1", [6.9, 0.5, -1.0])
    assert nearest == 7


def test_run_gives_one_connection_and_transactions_roll_back(db: Database, table: str) -> None:
    async def fail_midway(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        db.run(fail_midway)
    assert db.fetchval(f"SELECT count(*) FROM {table}") == 0

    async def commit(conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} (id) VALUES (1), (2)")
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))

    assert db.run(commit) == 2


def test_rejected_statement_is_query_error_not_outage(db: Database, table: str) -> None:
    db.execute(f"INSERT INTO {table} (id) VALUES (1)")
    with pytest.raises(QueryError) as info:
        db.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert info.value.sqlstate == "23505"  # unique_violation
    assert not isinstance(info.value, DatabaseUnavailable)
    with pytest.raises(QueryError):
        db.fetch("SELECT * FROM no_such_table_here")
    with pytest.raises(QueryError):  # refused by the driver before it reaches the server
        db.fetchval("SELECT $1::int")
    with pytest.raises(QueryError):
        db.fetchval("SELECT $1::int", "not a number")
    # the pool is still usable afterwards
    assert db.fetchval("SELECT 1") == 1


def test_unreachable_server_is_database_unavailable_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        Database("postgresql://heal:s3cret@127.0.0.1:1/nothing")
    assert time.monotonic() - started < 15
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="invalid database URL"):
        Database("postgresql://u:pw@localhost/db?sslmode=bogus")


def test_closed_database_says_so(database_url: str) -> None:
    database = Database(database_url)
    database.close()
    database.close()  # idempotent
    with pytest.raises(DatabaseUnavailable, match="closed"):
        database.fetchval("SELECT 1")


def test_nested_call_from_run_is_refused(db: Database) -> None:
    async def nested(conn: asyncpg.Connection) -> None:
        db.fetchval("SELECT 1")

    with pytest.raises(RuntimeError, match="inside Database.run"):
        db.run(nested)


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("postgresql://postgres:@/postgres?host=/x") == (
        "postgresql://postgres:@/postgres?host=/x"
    )


def test_session_killed_mid_call_is_unavailable_and_the_pool_recovers(db: Database) -> None:
    # Given the server ends the session while a statement runs (restart, failover, admin)
    async def killed(conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    # Then it is reported as an outage (retry later), not as a bad statement
    with pytest.raises(DatabaseUnavailable):
        db.run(killed)
    # And the pool replaces closed connections on its own
    before = db.fetchval("SELECT pg_backend_pid()")
    with Database(db.url) as admin:
        admin.fetchval("SELECT pg_terminate_backend($1, 5000)", before)  # waits for it
    after = None
    for _ in range(3):  # at most the one call that finds the socket closed may fail
        try:
            after = db.fetchval("SELECT pg_backend_pid()")
            break
        except DatabaseUnavailable:
            continue
    assert after is not None and after != before
