"""Run one argv with a timeout watchdog and keep the tail of its output.

This is the function RQ workers execute for verification checks (it must stay importable
and picklable-argument only), and the one the apply stage uses for command steps. It never
runs a shell: ``argv`` is a list, so text from an error can never become a command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from pipeline.redact import redact, redacted_tail

TAIL_CHARS = 2000
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
            stdin=subprocess.DEVNULL, text=True, errors="replace", env=full_env,
            start_new_session=True,  # own process group: the watchdog kills children too
        )
    except OSError as exc:
        return {"argv": list(argv), "exit_code": 127, "timed_out": False,
                "duration_s": round(time.monotonic() - started, 3), "tail": f"cannot run: {exc}"}
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out = (out or "") + f"\n[heal: killed after {timeout_s:g}s timeout]"
    return {
        "argv": list(argv),
        "exit_code": proc.returncode if not timed_out else 124,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 3),
        "tail": tail(out or ""),
    }

