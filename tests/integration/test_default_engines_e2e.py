"""The README's default, end to end: no HEAL_REDIS_URL, no HEAL_DATABASE_URL, a fresh
HEAL_HOME. heal starts its own embedded Redis and PostgreSQL, runs the whole job, releases
its leases and leaves nothing running (what a new user gets from the README's first command).

These run the installed ``heal`` as a subprocess, so nothing of the test session's own
engines or environment can stand in for the ones heal starts itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.scenarios.catalog import BY_NAME, build, tree_state

HEAL = str(Path(sys.executable).parent / "heal")

pytestmark = pytest.mark.slow


def _default_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX"}}
    env["HEAL_HOME"] = str(home)
    # the scenario's commands (ruff, python) come from heal's own virtualenv
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _assert_nothing_left_running(home: Path) -> None:
    redis_server, postgres = EmbeddedRedis(home), EmbeddedPostgres(home)
    assert redis_server.pid() is None, "the embedded Redis is still running"
    assert postgres.pid() is None, "the embedded PostgreSQL is still running"
    for engine in ("redis", "pg"):
        users = home / engine / "users"
        left = sorted(p.name for p in users.iterdir()) if users.is_dir() else []
        assert left == [], f"{engine} leases not released: {left}"


def test_demo_on_the_engines_heal_starts_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run([HEAL, "demo"], env=_default_env(home), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 as expected" in done.stdout, done.stdout
    # heal really started its own servers under HEAL_HOME (their data is there)...
    assert (home / "redis" / "redis.conf").is_file()
    assert (home / "pg" / "data" / "PG_VERSION").is_file()
    # ...and stopped them when the last process let go
    _assert_nothing_left_running(home)


def test_heal_run_heals_a_scenario_on_the_engines_heal_starts_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    scenario, root = build("unused-import", tmp_path)
    assert BY_NAME["unused-import"].healable
    done = subprocess.run([HEAL, "run", "--mode", "auto-safe", "--timeout", "300", "--",
                           *scenario.command], env=_default_env(home), cwd=root,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the command passes now, and the fix is a commit on the repository
    again = subprocess.run(list(scenario.command), cwd=root, env=_default_env(home),
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (home / "pg" / "data" / "PG_VERSION").is_file()
    _assert_nothing_left_running(home)


def test_a_passing_command_starts_no_engine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    scenario, root = build("unused-import", tmp_path)
    before = tree_state(root)
    done = subprocess.run([HEAL, "run", "--", sys.executable, "-c", "pass"],
                          env=_default_env(home), cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert not (home / "pg" / "data").exists()
    assert tree_state(root) == before
    _assert_nothing_left_running(home)
