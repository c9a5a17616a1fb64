"""A long-lived process that verifies again and again (the Dagster adapter, the Python API:
one validate stage, and so one check queue, per inline drain) collects no zombie processes
and keeps no queue alive: the verification workers it started that exited on their own
(idle) are reaped by the next check any queue runs, on the real Redis with real ``rq
worker`` processes."""

from __future__ import annotations

import gc
import sys
import time
import weakref
from pathlib import Path

import pytest
import redis

from pipeline.validate import rqjobs
from pipeline.validate.rqjobs import CheckQueue, CheckSpec


def _state(pid: int) -> str:
    """The process's state letter (Z: a zombie), or "" when it is gone (reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rpartition(")")[2].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_of_earlier_drains_are_reaped_and_their_queues_released(
        client: redis.Redis, prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rqjobs, "WORKER_IDLE_S", 1)  # (20 s in use)
    spec = CheckSpec("ok", "after", (sys.executable, "-c", "pass"), str(tmp_path), 30.0)
    first = CheckQueue(client, f"{prefix}:verify", workers=2)
    assert [r["exit_code"] for r in first.run([spec])] == [0]
    pids = [p.pid for p in first._spawned]
    assert pids
    released = weakref.ref(first)
    del first  # the drain that built it ended without closing it
    gc.collect()
    assert released() is None, "a finished drain's check queue is kept alive"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_state(pid) not in ("Z", "") for pid in pids):
        time.sleep(0.2)  # the idle workers exit on their own
    assert all(_state(pid) in ("Z", "") for pid in pids), "the idle workers did not exit"
    later = CheckQueue(client, f"{prefix}:verify", workers=2)  # the next drain's queue
    try:
        assert [r["exit_code"] for r in later.run([spec])] == [0]
        left = {pid: _state(pid) for pid in pids if _state(pid) == "Z"}
        assert left == {}, f"zombie verification workers of an earlier drain: {left}"
    finally:
        later.close()
