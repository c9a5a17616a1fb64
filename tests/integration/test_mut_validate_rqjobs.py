"""Verification checks as RQ jobs on the real Redis (issue 16: mutation score of
pipeline/validate): results in the order asked, each with its name, phase and job; the
timeout a check gets; a Redis that is down is StreamUnavailable, not a traceback."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.errors import StreamUnavailable
from pipeline.validate.rqjobs import QUEUE_GRACE_S, CheckQueue, CheckSpec


@pytest.fixture
def queue(client: redis.Redis, prefix: str) -> Iterator[CheckQueue]:
    q = CheckQueue(client, f"{prefix}:verify", workers=2)
    yield q
    q.close()


def test_no_specs_no_jobs(queue: CheckQueue) -> None:
    assert queue.run([]) == []
    assert queue._spawned == []


def test_results_in_order_with_name_phase_and_job(queue: CheckQueue, tmp_path: Path) -> None:
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    code = "import os, sys; print(os.path.basename(os.getcwd())); sys.exit({})"
    specs = [CheckSpec("failing-command", "before", (sys.executable, "-c", code.format(1)),
                       str(tmp_path / "before"), 30.0),
             CheckSpec("failing-command", "after", (sys.executable, "-c", code.format(0)),
                       str(tmp_path / "after"), 30.0),
             CheckSpec("slow", "after", (sys.executable, "-c", "import time; time.sleep(30)"),
                       str(tmp_path), 0.5)]
    runs = queue.run(specs)
    assert [(r["name"], r["phase"], r["exit_code"]) for r in runs] == [
        ("failing-command", "before", 1), ("failing-command", "after", 0), ("slow", "after", 124)]
    assert [r["tail"] for r in runs[:2]] == ["before\n", "after\n"]
    assert runs[2]["timed_out"] is True
    assert len({r["job"] for r in runs}) == 3 and all(r["job"] for r in runs)
    # the workers this queue started (at most its cap) stop with it
    assert 1 <= len(queue._spawned) <= 2
    spawned = list(queue._spawned)
    queue.close()
    assert queue._spawned == [] and all(p.poll() is not None for p in spawned)


def test_the_job_is_given_its_timeout_plus_grace(queue: CheckQueue, client: redis.Redis,
                                                 tmp_path: Path) -> None:
    from rq.job import Job

    spec = CheckSpec("lint", "after", (sys.executable, "-c", "pass"), str(tmp_path), 7.0)
    [run] = queue.run([spec])
    job = Job.fetch(run["job"], connection=client)
    assert job.timeout == int(7.0 + QUEUE_GRACE_S)
    assert job.description == "heal verify after:lint"
    assert job.args == ([sys.executable, "-c", "pass"], str(tmp_path), 7.0)
    assert run["argv"] == [sys.executable, "-c", "pass"] and run["exit_code"] == 0


def test_ensure_workers_starts_up_to_the_cap(client: redis.Redis, prefix: str) -> None:
    queue = CheckQueue(client, f"{prefix}:cap", workers=2)
    try:
        queue.ensure_workers(5)
        assert len(queue._spawned) == 2
        # each in a session of its own: a Ctrl-C meant for heal's terminal does not reach it
        assert all(os.getsid(p.pid) == p.pid != os.getsid(0) for p in queue._spawned)
        queue.ensure_workers(5)  # enough alive: none added
        assert len(queue._spawned) == 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and queue._live_workers() < 2:
            time.sleep(0.1)
        assert queue._live_workers() == 2
    finally:
        queue.close()
    assert queue._spawned == []


def test_redis_down_is_stream_unavailable(tmp_path: Path) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    down = redis.Redis(unix_socket_path=str(tmp_path / f"{uuid.uuid4().hex}.sock"),
                       retry=Retry(NoBackoff(), 0))
    queue = CheckQueue(down, "q", workers=1)
    spec = CheckSpec("lint", "after", ("true",), str(tmp_path), 5.0)
    with pytest.raises(StreamUnavailable, match="rq: Redis unreachable"):
        queue.run([spec])
    with pytest.raises(StreamUnavailable, match="rq: Redis unreachable"):
        queue.ensure_workers(1)
    assert queue._spawned == []


def test_a_job_that_fails_in_rq_is_a_lost_check_not_a_failed_command(
        queue: CheckQueue, tmp_path: Path) -> None:
    # an argv the runner cannot even hand to the OS makes the job itself fail: that is RQ's
    # (or heal's) failure, not the command's exit status, so no evidence about the fix
    spec = CheckSpec("lint", "after", (None,), str(tmp_path), 5.0)  # type: ignore[arg-type]
    [run] = queue.run([spec])
    assert run["exit_code"] == 124 and run["timed_out"] is False and run["lost"] is True
    assert run["tail"].startswith("lost: rq job failed: TypeError"), run["tail"]
    assert (run["name"], run["phase"], run["duration_s"]) == ("lint", "after", 5.0)


def test_the_watchdog_reports_a_job_nobody_ran(queue: CheckQueue, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.validate import rqjobs

    monkeypatch.setattr(rqjobs, "QUEUE_GRACE_S", 0.3)
    monkeypatch.setattr(queue, "ensure_workers", lambda wanted: None)
    started = time.monotonic()
    [run] = queue.run([CheckSpec("lint", "after", ("true",), str(tmp_path), 1.0)])
    assert 1.3 <= time.monotonic() - started < 10
    assert run["exit_code"] == 124 and run["timed_out"] is True
    # nobody took it: not run, which verification reads as "could not verify"
    assert run["not_run"] is True
    assert run["tail"] == "never ran: no verification worker took the job within 1.3s"
