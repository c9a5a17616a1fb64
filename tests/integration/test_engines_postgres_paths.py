"""The embedded PostgreSQL starts under a HEAL_HOME whose path holds a space and non-ASCII
letters (pg_ctl splits its ``-o`` options at whitespace: the socket folder must have none)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from storage.engines import stop_engines

ROOT = Path(__file__).resolve().parents[2]

USE = """
import sys
from pipeline.config import Settings
from storage.engines import open_database
db = open_database(Settings.from_env())
db.execute("CREATE TABLE IF NOT EXISTS kept (who text)")
db.execute("INSERT INTO kept VALUES ($1)", sys.argv[1])
print(db.fetchval("SELECT count(*) FROM kept"), flush=True)
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home sp ace-ünï"
    yield path
    stop_engines(
        Settings.from_env({"HEAL_HOME": str(path), "HEAL_REDIS_URL": "redis://x"}), force=True
    )


def _use(home: Path, who: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    proc = subprocess.run([sys.executable, "-c", USE, who], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**env, "HEAL_HOME": str(home), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_a_heal_home_with_a_space_starts_the_embedded_postgres(home: Path) -> None:
    # Given a HEAL_HOME with a space, When a process opens the database (first start,
    # initdb) and, after it stopped the server at exit, another one does (restart)
    assert _use(home, "first") == "1"
    assert _use(home, "second") == "2"
    # Then both started it, and the data persisted between them


REDIS_USE = """
from pipeline.config import Settings
from storage.engines import connect_redis
client = connect_redis(Settings.from_env())
client.client_info()  # what RQ's workers ask at start: it split the socket path at its space
print(client.connection_pool.connection_kwargs["path"])
"""


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A home with a space whose socket path is short enough to stay under it (a long one
    already moved to the temp folder)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="h ", dir="/tmp")) / "home x"
    yield path
    stop_engines(
        Settings.from_env({"HEAL_HOME": str(path), "HEAL_REDIS_URL": "redis://x"}), force=True
    )
    shutil.rmtree(path.parent, ignore_errors=True)


def test_a_heal_home_with_a_space_keeps_redis_s_socket_path_readable(short_home: Path) -> None:
    """QA: under such a home every RQ verification worker died at start (redis-py parses
    CLIENT INFO's ``laddr=<socket path>`` by spaces), so nothing was ever verified and each
    ``heal run`` waited minutes for checks that never ran."""
    home = short_home
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    proc = subprocess.run([sys.executable, "-c", REDIS_USE], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**env, "HEAL_HOME": str(home), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    socket_path = proc.stdout.strip()
    assert socket_path.endswith("redis.sock") and " " not in socket_path, socket_path



def test_a_link_planted_at_redis_s_socket_folder_in_tmp_is_refused(short_home: Path) -> None:
    """Under such a home the Redis socket's folder is $TMPDIR/heal-redis-<hash>, a name any
    local user can derive: a link (or their own folder) put there got the server's socket,
    which its owner could replace with theirs."""
    import shutil
    import stat
    import tempfile

    from storage.embedded import EmbeddedRedis

    # Given a link at the socket's folder to a folder of someone else's
    folder = EmbeddedRedis(short_home).socket.parent
    victim = Path(tempfile.mkdtemp(prefix="heal-victim-"))
    victim.chmod(0o755)
    folder.symlink_to(victim)
    try:
        # When heal starts the engines
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
             "engines", "start"], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**env, "HEAL_HOME": str(short_home), "PYTHONPATH": str(ROOT)})
        # Then it refuses (exit 2) saying what to remove, and nothing went in the link's target
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"the embedded Redis' socket folder {folder} is a symbolic link" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert list(victim.iterdir()) == []
        assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    finally:
        folder.unlink()
        shutil.rmtree(victim)
