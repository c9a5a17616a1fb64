"""Running heal as a user the test's files can lock out (root reads every file whatever its
mode): the command prefix, and the check that this user runs the same interpreter.

A virtual environment's ``python`` is a link to the interpreter it was made from. When that
interpreter lives where the unprivileged user may not go (pyenv under a ``/root`` of mode
700), the link resolves for that user to another Python (the system's 3.11.2 here), which
lacks this environment's packages for its version: the test would then fail on an import,
not on what it tests. Such a test is skipped, saying why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody() -> list[str]:
    """The command prefix that runs heal as nobody ([] when the tests do not run as root)."""
    if os.geteuid() != 0:
        return []
    probe = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import sys; print(*sys.version_info[:3], sep='.')"],
        capture_output=True, text=True, timeout=60)
    mine = ".".join(map(str, sys.version_info[:3]))
    if probe.returncode != 0 or probe.stdout.strip() != mine:
        got = probe.stdout.strip() or probe.stderr.strip()[:200]
        pytest.skip(f"the unprivileged user cannot run this interpreter ({sys.executable} is "
                    f"Python {mine}; as nobody it is {got!r}): give nobody access to it")
    return list(NOBODY)
