"""A worker that restarts its embedded Redis after ``heal engines stop --force`` takes its
lease back, so the next short heal command attaches to the engine instead of stopping it
under the worker at exit (which made the worker restart it again: a loop after every heal
command).

Real embedded engines, the installed ``heal`` as subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.embedded import EmbeddedRedis

HEAL = str(Path(sys.executable).parent / "heal")

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX"}}
    env["HEAL_HOME"] = str(home)
    return env


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _users(home: Path, engine: str = "redis") -> list[str]:
    users = home / engine / "users"
    return sorted(p.name for p in users.iterdir()) if users.is_dir() else []


def test_a_worker_that_restarts_a_force_stopped_engine_takes_its_lease_back(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = _env(home)
    log = tmp_path / "worker.err"
    restarted = f"embedded engine under {home / 'redis'} was down: restarted by this worker"
    with log.open("w") as err:
        worker = subprocess.Popen([HEAL, "worker", "fingerprint", "--concurrency", "1"],
                                  env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=err)
    try:
        me = str(worker.pid)
        # Given a worker attached to its embedded Redis
        _wait("the worker's Redis lease", lambda: me in _users(home), 180)
        uses_postgres = me in _users(home, "pg")
        # When the engines are stopped under it
        stopped = subprocess.run([HEAL, "engines", "stop", "--force"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # Then it restarts Redis and holds a lease on it again
        _wait("the worker's restart", lambda: restarted in log.read_text(), 120)
        _wait("the worker's lease back", lambda: me in _users(home), 30)
        if uses_postgres:  # the same path restarts its PostgreSQL and re-takes that lease
            _wait("the worker's PostgreSQL lease back", lambda: me in _users(home, "pg"), 60)
        assert worker.poll() is None, log.read_text()
        # And a short heal command attaches and detaches without stopping it
        for _ in range(2):
            info = subprocess.run([HEAL, "engines", "info"], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert info.returncode == 0, info.stdout + info.stderr
        time.sleep(5)  # the worker polls; a stopped Redis would be restarted and logged
        assert EmbeddedRedis(home).pid() is not None, "heal engines info stopped Redis"
        assert log.read_text().count(restarted) == 1, log.read_text()
        assert me in _users(home)
        # And the worker still drops its lease at exit, stopping Redis as the last user
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, log.read_text()
        _wait("Redis to stop with its last lease", lambda: EmbeddedRedis(home).pid() is None,
              60)
        assert _users(home) == []
        assert me not in _users(home, "pg")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        subprocess.run([HEAL, "engines", "stop", "--force"], env=env, cwd=tmp_path,
                       capture_output=True, timeout=120, check=False)
