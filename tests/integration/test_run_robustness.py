"""``heal run`` as a CI step meets it: closed standard streams, bad configuration, a command
that leaves a background process behind, engines that cannot be reached. Each test runs the
real ``heal`` as a subprocess (this checkout first on ``PYTHONPATH``) with a fresh HEAL_HOME.

The contract (DESIGN.md): heal run exits with the command's own status; Redis or PostgreSQL
being unreachable never changes it; 2 is for bad usage or configuration, refused before the
command runs with a message that says what to change; never an "internal error".
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.embedded import EmbeddedRedis
from tests._interrupt import sigint_default

ROOT = Path(__file__).resolve().parents[2]
HEAL = str(Path(sys.executable).parent / "heal")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX", "CI",
                        "GITHUB_ACTIONS", "GITLAB_CI", "HEAL_PROGRESS"}}
    env.update({"HEAL_HOME": str(home), "PYTHONPATH": str(ROOT), **extra})
    return env


def _shell(line: str, env: dict[str, str], cwd: Path, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
    """``line`` through sh, ``heal`` meaning this checkout's heal (so a test may close fds)."""
    return subprocess.run(["sh", "-c", line.replace("heal ", f"{shlex.quote(HEAL)} ", 1)],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_closed_standard_streams_neither_crash_the_engines_nor_stop_the_command(
        tmp_path: Path) -> None:
    # stdin closed, the embedded Redis started by this very run: the failure is published
    home = tmp_path / "h0"
    done = _shell("heal run --no-wait -- sh -c 'echo boom >&2; exit 3' <&-", _env(home), tmp_path)
    assert done.returncode == 3, done.stderr
    assert "published run-" in done.stderr and "could not report" not in done.stderr
    assert "crashed" not in (home / "redis" / "redis.log").read_text()
    assert EmbeddedRedis(home).pid() is None  # released at exit all the same
    # stdout closed, then stderr closed: the command still runs, its status is heal's
    for n, (closing, status) in enumerate([(">&-", 0), ("2>&-", 5)]):
        marker = tmp_path / f"ran{n}"
        done = _shell(f"heal run --no-wait -- sh -c 'touch {marker}; echo out; exit {status}' "
                      f"{closing}", _env(tmp_path / f"h{n + 1}"), tmp_path)
        assert done.returncode == status, done.stderr
        assert marker.exists() and "internal error" not in done.stderr


@pytest.mark.parametrize("variable, value, shown", [
    ("HEAL_REDIS_URL", "http://foo", "HEAL_REDIS_URL=http://foo: unsupported scheme 'http'"),
    ("HEAL_REDIS_URL", "redis://:pw@[::1", "HEAL_REDIS_URL is not a valid URL"),
    ("HEAL_REDIS_URL", "redis://h:port/0", "HEAL_REDIS_URL=redis://h:port/0: bad port"),
    ("HEAL_DATABASE_URL", "mysql://u:pw@h/db", "HEAL_DATABASE_URL=mysql://u:***@h/db: "
                                               "unsupported scheme"),
])
def test_a_malformed_engine_url_is_refused_before_the_command_runs(
        tmp_path: Path, variable: str, value: str, shown: str) -> None:
    marker = tmp_path / "ran"
    for status in (0, 3):
        done = _shell(f"heal run -- sh -c 'touch {marker}; exit {status}'",
                      _env(tmp_path / "home", **{variable: value}), tmp_path)
        assert done.returncode == 2, done.stderr
        assert shown in done.stderr and "internal error" not in done.stderr
        assert "pw@" not in done.stderr and not marker.exists()


@pytest.mark.parametrize("variable, value", [
    ("HEAL_EMBEDDER", "bogus"), ("HEAL_EMBEDDER", "Reference"), ("HEAL_PROGRESS", "yes"),
])
def test_a_misspelt_setting_is_refused_before_the_command_runs(
        tmp_path: Path, variable: str, value: str) -> None:
    """Before: the typo silently meant the default (the lean runtime, no progress lines)."""
    marker = tmp_path / "ran"
    done = _shell(f"heal run -- sh -c 'touch {marker}; exit 3'",
                  _env(tmp_path / "home", **{variable: value}), tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{variable}={value!r}: must be one of" in done.stderr and not marker.exists()


def test_an_unusable_heal_home_is_refused_or_keeps_the_status(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.touch()
    marker = tmp_path / "ran"
    done = _shell(f"heal run -- sh -c 'touch {marker}; exit 3'", _env(afile / "home"), tmp_path)
    assert done.returncode == 2 and not marker.exists(), done.stderr
    assert f"{afile} is not a directory; set HEAL_HOME" in done.stderr
    # /proc/x: refused up front where the folder above is not writable; as root, found only
    # when heal creates it, after the command: the command's status stays
    done = _shell(f"heal run -- sh -c 'touch {marker}; exit 3'", _env(Path("/proc/x")),
                  tmp_path)
    assert "internal error" not in done.stderr and "HEAL_HOME" in done.stderr, done.stderr
    assert (done.returncode, marker.exists()) in ((2, False), (3, True)), done.stderr


def test_bad_options_are_refused_with_exit_2_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = _env(tmp_path / "home")
    for options, says in [
        ("--json-file /nonexistent/dir/x.json", "--json-file /nonexistent/dir/x.json: its "
                                                 "folder /nonexistent/dir does not exist"),
        ("--timeout nan", "--timeout nan: must be a number of seconds"),
        ("--timeout inf", "--timeout inf: must be a number of seconds"),
        (f"--json --json-file {tmp_path / 'd.json'}", "not allowed with argument"),
    ]:
        done = _shell(f"heal run {options} -- touch {marker}", env, tmp_path)
        assert done.returncode == 2 and says in done.stderr, (options, done.stderr)
        assert not marker.exists() and "internal error" not in done.stderr


def _timed_run(tmp_path: Path, line: str, env: dict[str, str]) -> tuple[int, float, str]:
    """(status, seconds, output) of heal; its output goes to a file, not a pipe the
    background child would hold open too."""
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        started = time.monotonic()
        proc = subprocess.Popen([HEAL, "run", "--no-wait", "--", "sh", "-c", line], env=env,
                                cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
        status = proc.wait(timeout=60)
        elapsed = time.monotonic() - started
    return status, elapsed, out.read_text()


def test_a_background_child_does_not_hold_heal_run(tmp_path: Path, redis_url: str,
                                                   prefix: str) -> None:
    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix)
    for status in (0, 4):
        # the child would hold the command's stdout/stderr for 6 s
        status_seen, elapsed, out = _timed_run(
            tmp_path, f"echo before; sleep 6 & echo after >&2; exit {status}", env)
        assert status_seen == status, out
        assert elapsed < 4.0, f"heal run waited {elapsed:.1f}s for the background child"
        assert "before" in out and "after" in out  # the command's own output passed through


def test_the_decision_json_is_written_whatever_happened(tmp_path: Path) -> None:
    # Redis unreachable: the command's status, and a JSON saying the error was not reported
    report = tmp_path / "r.json"
    done = _shell(f"heal run --json-file {report} -- sh -c 'echo boom >&2; exit 3'",
                  _env(tmp_path / "home", HEAL_REDIS_URL="redis://127.0.0.1:1/0"), tmp_path)
    assert done.returncode == 3, done.stderr
    decision = json.loads(report.read_text())
    assert decision["decision"] == "not reported" and decision["exit_status"] == 3
    assert decision["error_id"] is None and "cannot reach HEAL_REDIS_URL" in decision["detail"]
    assert decision["command"] == ["sh", "-c", "echo boom >&2; exit 3"]
    # a command that is not found: exit 2, and the refusal as the decision, in the file...
    report.unlink()
    done = _shell(f"heal run --json-file {report} -- no-such-command-heal",
                  _env(tmp_path / "home"), tmp_path)
    assert done.returncode == 2, done.stderr
    decision = json.loads(report.read_text())
    assert decision["decision"] == "refused" and decision["exit_status"] == 2
    assert "command not found: 'no-such-command-heal'" in decision["detail"]
    # ...or on stderr (its last line), stdout staying the command's own
    done = _shell("heal run --json -- no-such-command-heal", _env(tmp_path / "home"), tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert json.loads(done.stderr.strip().splitlines()[-1])["decision"] == "refused"


def test_heal_s_warnings_on_stderr_are_prefixed_and_said_once(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """PostgreSQL down: the warnings of the layers below read ``heal: ...`` like heal's own
    lines (before: bare, and 'attempt records not stored' twice); the status is kept."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix,
               HEAL_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/db")
    done = _shell("heal run --timeout 60 -- sh -c 'echo OWN-LINE >&2; exit 3'", env, tmp_path)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "OWN-LINE"  # the command's own, as it printed it
    assert all(line.startswith("heal: ") for line in lines[1:]), done.stderr
    assert sum("attempt records not stored" in line for line in lines) == 1, done.stderr


def test_ctrl_c_stops_the_command_and_is_not_reported_as_an_error(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """Ctrl-C from a terminal reaches the whole process group: the command stops (its status
    is kept) and heal publishes nothing (before: a KeyboardInterrupt 'error' escalated to a
    human on every interrupted run)."""
    import signal

    import redis

    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix)
    out = tmp_path / "decision.json"
    proc = subprocess.Popen(
        [HEAL, "run", "--json-file", str(out), "--", sys.executable, "-c",
         "import time; print('started', flush=True); time.sleep(30)", "--password=pw-9z"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # its own process group, as a terminal's foreground job
        start_new_session=True, preexec_fn=sigint_default)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # Python's KeyboardInterrupt exit status, kept
    assert "interrupted" in err and "published" not in err, err
    assert redis.Redis.from_url(redis_url).xlen(f"{prefix}:errors") == 0
    decision = json.loads(out.read_text())
    assert decision["decision"] == "interrupted" and decision["error_id"] is None
    assert "pw-9z" not in out.read_text()  # the command's secrets redacted, as when it passes
