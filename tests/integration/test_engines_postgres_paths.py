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
