"""Run one argv with a timeout watchdog and keep the tail of its output.

This is the function RQ workers execute for verification checks (it must stay importable
and picklable-argument only), and the one the apply stage uses for command steps. It never
runs a shell: ``argv`` is a list, so text from an error can never become a command line.

The output is read until the pipe reaches end of file, but a process the command left behind
(a server started in its own session) inherits the pipe and may hold it open for as long as it
lives. So, as ``heal run``'s interceptor does (``producers.interceptor.OUTPUT_GRACE_S``), once
the command has exited, or has been killed at its timeout, the output is read for at most
:data:`OUTPUT_GRACE_S` more seconds, then what is already waiting is taken and heal closes its
end. The command's own exit status is the result; the process left behind is not killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from pipeline.redact import redact, redacted_tail

TAIL_CHARS = 2000
#: seconds the output is still read after the command exited (or was killed at its timeout)
#: while a process it left behind keeps the pipe open (see the module's note)
OUTPUT_GRACE_S = 0.5
#: seconds to wait for a process group killed at its timeout to be reaped; a process that
#: does not die (uninterruptible sleep) is reported as timed out all the same
KILL_WAIT_S = 5.0
#: bytes of what is waiting in the pipe taken after the grace period (more than a pipe holds)
FINAL_DRAIN_BYTES = 2 * 1024 * 1024
#: seconds between looks at the command while its pipe stays open and silent
_POLL_S = 0.05
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "cmd", "powershell", "pwsh"})


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters, secrets redacted: a re-run prints the same tokens the
    error did, and tails are stored in verdicts, attempts and apply results. Redacted
    before the cut: a cut could split a secret, whose rest no rule would see."""
    return redact(text) if len(text) <= limit else "…" + redacted_tail(text, limit)


def is_shell_string(argv: list[str] | tuple[str, ...]) -> bool:
    """True for ``sh -c '...'``-style argv, which heal refuses to run."""
    if not argv:
        return False
    prog = os.path.basename(argv[0])
    return prog in SHELLS and any(a in ("-c", "/c", "-Command") for a in argv[1:])


def shell_with_error_text(argv: list[str] | tuple[str, ...], params: dict[str, object]) -> bool:
    """True when ``argv`` is a shell string carrying text taken from the error (a parameter
    value). A constant script written by a seed author is allowed; error text never reaches
    a shell."""
    if not is_shell_string(argv):
        return False
    script = " ".join(argv[1:])
    return any(isinstance(v, str) and v and v in script for v in params.values())


def run_argv(argv: list[str], cwd: str, timeout_s: float,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` in ``cwd``; kill its whole process group after ``timeout_s``.

    Returns ``{"argv", "exit_code", "timed_out", "duration_s", "tail"}``; a program that cannot
    start gets exit code 127 and the reason in ``tail`` (never raises for the command's sake).
    """
    started = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    # heal's own tools (ruff is a run-time dependency) are found even when its virtualenv
    # is not activated; appended, so the user's PATH always wins
    own_bin = os.path.dirname(sys.executable)
    path = full_env.get("PATH", "")
    if own_bin not in path.split(os.pathsep):
        full_env["PATH"] = f"{path}{os.pathsep}{own_bin}" if path else own_bin
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env,
            start_new_session=True,  # own process group: the watchdog kills children too
        )
    except OSError as exc:
        return {"argv": list(argv), "exit_code": 127, "timed_out": False,
                "duration_s": round(time.monotonic() - started, 3), "tail": f"cannot run: {exc}"}
    raw, timed_out = _collect(proc, started + timeout_s)
    out = raw.decode("utf-8", errors="replace")
    if timed_out:
        out += f"\n[heal: killed after {timeout_s:g}s timeout]"
    return {
        "argv": list(argv),
        "exit_code": 124 if timed_out or proc.returncode is None else proc.returncode,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 3),
        "tail": tail(out),
    }


def _collect(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """Read ``proc``'s output until end of file, or :data:`OUTPUT_GRACE_S` after it exited or
    was killed at ``deadline`` (monotonic); (output, timed out). Never waits unboundedly."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks: list[bytes] = []
    timed_out = False
    stop_at: float | None = None  # set once the command exited or was killed
    try:
        while True:
            now = time.monotonic()
            if stop_at is None and proc.poll() is not None:
                stop_at = now + OUTPUT_GRACE_S
            elif stop_at is None and now >= deadline:
                timed_out = True
                _kill(proc)
                stop_at = time.monotonic() + OUTPUT_GRACE_S
            elif stop_at is not None and now >= stop_at:
                break
            until = deadline if stop_at is None else stop_at
            ready, _, _ = select.select([fd], [], [], max(0.0, min(_POLL_S, until - now)))
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:  # end of file: the command may still run (it closed its stdout)
                break
            chunks.append(data)
        if stop_at is None and not _wait(proc, deadline - time.monotonic()):
            timed_out = True
            _kill(proc)
        chunks.append(_waiting(fd))
    finally:
        proc.stdout.close()
    if proc.returncode is None:
        _wait(proc, KILL_WAIT_S)
    return b"".join(chunks), timed_out


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _wait(proc, KILL_WAIT_S)


def _waiting(fd: int) -> bytes:
    """What is already in the pipe, without waiting for more (bounded)."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(BlockingIOError, OSError):
        while size < FINAL_DRAIN_BYTES:
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    return b"".join(chunks)
