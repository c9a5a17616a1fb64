"""Checks run although a SIGKILLed heal left its dead workers registered, and a check that
timed out or never ran is no evidence against a fix: "could not verify", escalated (real
Redis, real `rq worker` processes, real git)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from rq import Worker

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.validate import rqjobs
from pipeline.validate.rqjobs import CheckQueue, CheckSpec
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

STARTER = """
import sys, time, redis
from pipeline.validate.rqjobs import CheckQueue
queue = CheckQueue(redis.Redis.from_url(sys.argv[1]), sys.argv[2], workers=2)
queue.ensure_workers(2)
print(" ".join(str(p.pid) for p in queue._spawned), flush=True)
time.sleep(600)
"""


def _registered(client: redis.Redis, name: str) -> int:
    return len(Worker.all(queue=rqjobs.Queue(name, connection=client)))


def test_checks_run_although_a_killed_process_left_its_dead_workers_registered(
        tmp_path: Path, redis_url: str, client: redis.Redis) -> None:
    # Given a heal process and its two verification workers, SIGKILLed together (their
    # registrations stay behind in Redis, claiming two live workers on the queue)
    name = f"t-dead-{uuid.uuid4().hex[:8]}:verify"
    root = Path(__file__).resolve().parents[2]
    starter = subprocess.Popen([sys.executable, "-c", STARTER, redis_url, name], cwd=root,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(root)})
    assert starter.stdout is not None
    workers = [int(p) for p in starter.stdout.readline().split()]
    deadline = time.monotonic() + 60
    while _registered(client, name) < 2:
        assert time.monotonic() < deadline, "the workers never registered"
        time.sleep(0.2)
    for pid in [starter.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    starter.wait(timeout=30)
    assert _registered(client, name) == 2  # dead, yet registered
    # When a new process runs checks on that queue (at most two workers of its own)
    queue = CheckQueue(client, name, workers=2)
    try:
        started = time.monotonic()
        specs = [CheckSpec(f"c{n}", "after", (sys.executable, "-c", "print('ran')"),
                           str(tmp_path), 20.0) for n in range(2)]
        runs = queue.run(specs)
        # Then they ran at once, on workers it started (not after RQ forgot the dead ones)
        assert [r["exit_code"] for r in runs] == [0, 0], runs
        assert all("ran" in r["tail"] for r in runs)
        assert time.monotonic() - started < 15
    finally:
        queue.close()


@pytest.fixture
def no_worker_validator(stage_settings: Settings, client: redis.Redis, prefix: str,
                        attempt_store: AttemptStore, monkeypatch: pytest.MonkeyPatch
                        ) -> Validator:
    """A validator whose check queue may start no worker, and nobody else listens on it."""
    monkeypatch.setattr(rqjobs, "QUEUE_GRACE_S", 1.0)
    queue = CheckQueue(client, f"{prefix}:lonely:verify", workers=0)
    return Validator(stage_settings, client, attempt_store, checks=queue)


def _short_timeouts(root: Path, seconds: int) -> None:
    toml = (root / "heal.toml").read_text().replace("timeout_s = 60", f"timeout_s = {seconds}")
    (root / "heal.toml").write_text(toml.replace("[limits]\n",
                                                 f"[limits]\ncheck_timeout_s = {seconds}\n"))


def test_checks_that_never_ran_are_could_not_verify_not_a_failed_fix(
        tmp_path: Path, no_worker_validator: Validator, applier: Applier) -> None:
    # Given a good fix whose checks no worker ever takes
    root = sample_repo(tmp_path)
    break_formatting(root)
    _short_timeouts(root, 1)
    git(root, "commit", "-qam", "short timeouts")
    verdict = no_worker_validator.validate(
        candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    # Then verification could not run: escalated, never "failed" or "still fails"
    assert verdict.decision == "escalate", verdict.reason
    assert "could not verify" in verdict.reason and "never ran" in verdict.reason
    assert "still fails" not in verdict.reason and "reproduce" not in verdict.reason
    assert "heal/" not in git(root, "branch", "--list")
    outcome = applier.handle(verdict)
    assert outcome.status == "escalated", outcome.detail


HANGS_WHEN_FIXED = """\
import os
import subprocess
import sys
import threading
import time

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
if p.returncode == 0 and "worktrees" in os.getcwd():
    time.sleep(30)
sys.exit(p.returncode)
"""


def test_a_timed_out_run_after_the_fix_is_could_not_verify_not_still_fails(
        tmp_path: Path, validator: Validator) -> None:
    # Given a step that hangs (past its 2 s timeout) in the worktree once fixed
    root = sample_repo(tmp_path)
    break_formatting(root)
    (root / "check.py").write_text(HANGS_WHEN_FIXED)
    _short_timeouts(root, 2)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "check")
    fine = f"fp-hangs-{tmp_path.name}"  # (one fingerprint for both requests below)
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX,
                                           fine=fine))
    # Then the timeout is a timeout: could not verify, escalated, not "still fails"
    assert verdict.decision == "escalate", verdict.reason
    assert "could not verify: failing-command (after) timed out" in verdict.reason
    runs = {(r["phase"], r["name"]): r for r in verdict.verification}
    assert runs[("after", "failing-command")]["exit_code"] == 124
    # And, as the reason says, a re-run may verify it: it is not refused as a duplicate
    again = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX,
                                         fine=fine))
    assert "dedupe" not in again.reason, again.reason
    assert "could not verify" in again.reason, again.reason


def test_workers_that_cannot_start_fail_the_checks_at_once_saying_why(
        tmp_path: Path, stage_settings: Settings, client: redis.Redis, prefix: str,
        attempt_store: AttemptStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: under a HEAL_HOME with a space every `rq worker` died at start (redis-py split a
    socket path), their stderr went nowhere, and each check waited out its timeout and grace
    (minutes per `heal run`) before 'never ran'. Now a worker that dies as it starts is
    noticed: the checks end within seconds, naming what the worker said."""
    die = [sys.executable, "-c",
           "import sys; sys.stderr.write('ValueError: socket path split at a space\\n'); "
           "sys.exit(1)"]
    monkeypatch.setattr(rqjobs, "worker_argv", lambda rq_bin, queue: die)
    queue = CheckQueue(client, f"{prefix}:dying:verify", workers=2)
    validator = Validator(stage_settings, client, attempt_store, checks=queue)
    root = sample_repo(tmp_path)
    break_formatting(root)
    started = time.monotonic()
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    took = time.monotonic() - started
    queue.close()
    assert verdict.decision == "escalate", verdict.reason
    assert verdict.reason.count("verification workers cannot start: ValueError: socket "
                                "path split at a space") == 1, verdict.reason
    # (the default timeouts would have waited 60 s + 20 s per check, one check after another)
    assert took < 30, took


def test_a_job_a_dying_worker_took_off_the_queue_is_queued_again_and_runs(
        tmp_path: Path, redis_url: str, client: redis.Redis, prefix: str) -> None:
    """A worker SIGKILLed right after its BLMOVE (the race of the test above) leaves the job
    in RQ's intermediate list, QUEUED forever to us; RQ would fail it as stuck a minute later,
    and that failure read as exit 1, evidence against the fix."""
    queue = CheckQueue(client, f"{prefix}:transit:verify", workers=1)
    # Given a 'worker' blocked on the queue that will take the next job and never start it
    thief = redis.Redis.from_url(redis_url)
    took: list[object] = []
    grab = threading.Thread(target=lambda: took.append(thief.blmove(
        queue.queue.key, queue.queue.intermediate_queue_key, 30)))
    grab.start()
    deadline = time.monotonic() + 10
    while not any(c.get("cmd") == "blmove" for c in client.client_list()):
        assert time.monotonic() < deadline, "the thief never blocked"
        time.sleep(0.05)
    try:
        # When a check is run on that queue
        started = time.monotonic()
        runs = queue.run([CheckSpec("c", "after", (sys.executable, "-c", "print('ran')"),
                                    str(tmp_path), 20.0)])
        grab.join(timeout=5)
        # Then the thief had it, yet it ran on our own worker within seconds, once
        assert took and took[0] == runs[0]["job"].encode(), (took, runs)
        assert runs[0]["exit_code"] == 0 and "ran" in runs[0]["tail"], runs
        assert time.monotonic() - started < 15
        assert client.llen(queue.queue.intermediate_queue_key) == 0
    finally:
        queue.close()
        thief.close()


KILLS_ITS_WORKER = """\
import os
import signal
import subprocess
import sys

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
if p.returncode == 0 and "worktrees" in os.getcwd():
    os.kill(os.getppid(), signal.SIGKILL)  # (its parent is the verification worker)
sys.exit(p.returncode)
"""


def test_a_check_whose_worker_dies_mid_run_is_could_not_verify_at_once(
        tmp_path: Path, validator: Validator) -> None:
    # Given a failing step whose run after the fix kills the worker running it (an OOM kill)
    root = sample_repo(tmp_path)
    break_formatting(root)
    (root / "check.py").write_text(KILLS_ITS_WORKER)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "check")
    started = time.monotonic()
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX))
    # Then verification could not decide: escalated within seconds (not after its 60 s
    # timeout and the grace), and nothing counts against the fix
    assert verdict.decision == "escalate", verdict.reason
    assert "could not verify: failing-command (after) did not finish (its verification worker"\
        in verdict.reason and "died while running it" in verdict.reason, verdict.reason
    assert "still fails" not in verdict.reason
    runs = {(r["phase"], r["name"]): r for r in verdict.verification}
    assert runs[("after", "failing-command")]["exit_code"] == 124
    assert time.monotonic() - started < 40


def test_a_job_rq_failed_itself_is_lost_not_a_failed_command(
        tmp_path: Path, client: redis.Redis, prefix: str) -> None:
    # Given a job that fails in RQ, not in the command (run_argv itself raises: no argv)
    queue = CheckQueue(client, f"{prefix}:rqfail:verify", workers=1)
    try:
        runs = queue.run([CheckSpec("c", "after", (), str(tmp_path), 20.0)])
    finally:
        queue.close()
    # Then it is reported lost (no evidence), never the command's exit 1
    assert runs[0].get("lost") is True and runs[0]["exit_code"] == 124, runs
    assert runs[0]["tail"].startswith("lost: rq job failed"), runs
