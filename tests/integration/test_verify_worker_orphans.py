"""Verification workers do not outlive a killed heal process once their Redis is gone: a
process that starts RQ workers (CheckQueue) is SIGKILLed, so it cannot stop them, and then
its embedded Redis stops. The workers exit on their own (real Redis, real `rq worker`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis

from pipeline.validate.rqworker import orphaned
from storage.embedded import EmbeddedRedis

pytestmark = pytest.mark.slow

STARTER = """
import sys, time, redis
from pipeline.validate.rqjobs import CheckQueue
queue = CheckQueue(redis.Redis.from_url(sys.argv[1]), "t-orphans:verify", workers=2)
queue.ensure_workers(2)
print(" ".join(str(p.pid) for p in queue._spawned), flush=True)
time.sleep(600)
"""


def _wait(condition: Callable[[], bool], what: str, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {deadline_s:.0f} s: {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_workers_of_a_killed_process_exit_when_their_redis_is_gone(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "home")
    with server.leases.locked():
        url = server.ensure_running()
    root = Path(__file__).resolve().parents[2]
    starter = subprocess.Popen([sys.executable, "-c", STARTER, url], cwd=root,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert starter.stdout is not None
        workers = [int(p) for p in starter.stdout.readline().split()]
        assert len(workers) == 2
        # the workers came up and registered (they are listening on the queue)
        client = redis.Redis.from_url(url)
        _wait(lambda: all(_alive(p) for p in workers)
              and len(client.smembers("rq:workers")) == 2, "two registered workers")
        starter.send_signal(signal.SIGKILL)  # no atexit: nobody stops the workers
        starter.wait(timeout=30)
        time.sleep(1.0)
        assert all(_alive(p) for p in workers), "an orphan with its Redis up keeps serving"
    finally:
        if starter.poll() is None:
            starter.kill()
        with server.leases.locked():
            server.stop()
    _wait(lambda: not any(_alive(p) for p in workers), "the orphaned workers to exit")


def test_a_worker_started_by_hand_is_never_an_orphan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_VERIFY_PARENT_PID", raising=False)
    assert orphaned() is False
    assert orphaned(os.getppid()) is False
    assert orphaned(os.getppid() + 1) is True
