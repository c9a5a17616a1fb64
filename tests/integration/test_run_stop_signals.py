"""SIGTERM/SIGHUP to `heal run` are a stop as Ctrl-C is (docker stop, Kubernetes, systemd and a
cancelled GitLab job send SIGTERM): while CMD runs the signal is forwarded and the run is
`interrupted` (nothing published); while heal waits for the decision it stops at once, writes
the decision JSON and exits with CMD's own status (before: it lingered reporting the cancelled
step as an error, or died with 143 without the JSON)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from pipeline.config import STAGES

ROOT = Path(__file__).resolve().parents[2]
HEAL = str(Path(sys.executable).parent / "heal")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX", "CI",
                        "GITHUB_ACTIONS", "GITLAB_CI", "HEAL_PROGRESS"}}
    env.update({"HEAL_HOME": str(home), "PYTHONPATH": str(ROOT), **extra})
    return env


def test_sigterm_while_the_command_runs_is_a_stop_not_an_error(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    out = tmp_path / "decision.json"
    proc = subprocess.Popen(
        [HEAL, "run", "--json-file", str(out), "--", sys.executable, "-c",
         "import time; print('started', flush=True); time.sleep(60)"],
        env=_env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # to heal alone: heal forwards it to the command
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # the command's own status (killed by SIGTERM)
    assert "interrupted by SIGTERM (status 143): not reported as an error" in err, err
    assert "published" not in err, err
    assert time.monotonic() - started < 20, err
    assert redis.Redis.from_url(redis_url).xlen(f"{prefix}:errors") == 0
    decision = json.loads(out.read_text())
    assert decision["decision"] == "interrupted" and decision["error_id"] is None
    assert "SIGTERM" in decision["detail"]


def test_sigterm_while_waiting_for_the_decision_keeps_the_status_and_writes_the_json(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    # every stage looks served by a live worker that never answers: heal waits for them
    client = redis.Redis.from_url(redis_url)
    for stage in STAGES:
        client.set(f"{prefix}:alive:{stage}:frozen-1", b"1", ex=300)
    out = tmp_path / "decision.json"
    proc = subprocess.Popen(
        [HEAL, "run", "--timeout", "120", "--json-file", str(out), "--",
         "sh", "-c", "echo boom-stop-3 >&2; exit 3"],
        env=_env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    while True:  # until the failure is published: heal then waits for the workers
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
        if "published run-" in line:
            break
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, rest = proc.communicate(timeout=60)
    err = "".join(seen) + rest
    assert proc.returncode == 3, err  # CMD's status, never 143
    assert time.monotonic() - started < 20, err
    assert "stopped waiting (SIGTERM); the error stays queued as run-" in err, err
    decision = json.loads(out.read_text())
    assert decision["decision"] == "none" and decision["error_id"].startswith("run-")
    assert decision["exit_status"] == 3 and decision["detail"] == "stopped waiting (SIGTERM)"


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM (/proc/PID/status ``SigCgt``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_a_burst_of_sigterms_while_heal_stops_keeps_the_status_the_json_says(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """A runner that repeats its SIGTERM (or two that both send one) while heal is stopping:
    the exit status stays the one the decision JSON already says (before: a later SIGTERM,
    during the engines' release, killed heal with 143 while the JSON said 5)."""
    client = redis.Redis.from_url(redis_url)
    for stage in STAGES:
        client.set(f"{prefix}:alive:{stage}:frozen-1", b"1", ex=300)
    out = tmp_path / "decision.json"
    proc = subprocess.Popen(
        [HEAL, "run", "--timeout", "120", "--json-file", str(out), "--",
         "sh", "-c", "echo boom-burst-5 >&2; exit 5"],
        env=_env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    while True:
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
        if "published run-" in line:
            break
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM)  # again and again, until heal has exited
        time.sleep(0.01)
    _, rest = proc.communicate(timeout=60)
    err = "".join(seen) + rest
    decision = json.loads(out.read_text())
    assert decision["exit_status"] == 5, err
    assert proc.returncode == 5, err  # what the JSON says, never 143


def test_sigterm_before_the_command_started_writes_the_json_and_does_not_run_it(
        tmp_path: Path) -> None:
    """A SIGTERM while heal is still starting (its imports, before the command runs): the
    command is not started, the decision JSON says `interrupted` and the exit status 143 it
    exits with (before: until the handler of the run was installed, ~0.3-0.5 s, heal died
    with 143 and wrote nothing; right before the command, it ran the command anyway)."""
    out = tmp_path / "decision.json"
    marker = tmp_path / "ran"
    proc = subprocess.Popen(
        [HEAL, "run", "--json-file", str(out), "--", "sh", "-c", f"touch {marker}; exit 4"],
        env=_env(tmp_path / "home", HEAL_REDIS_URL="redis://127.0.0.1:1"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches_sigterm(proc.pid) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM before the command started (status 143)" in err, err
    assert not marker.exists()
    decision = json.loads(out.read_text())
    assert decision["decision"] == "interrupted" and decision["exit_status"] == 143
    assert decision["detail"] == "interrupted (SIGTERM) before the command started: not run"
