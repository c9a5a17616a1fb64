"""``heal run`` / ``heal explain --json`` / ``heal apply`` in subprocesses, for the tests of
the install fixes that run the repository's own package manager (shims on PATH record the
argv they ran in ``calls.log``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HEAL = str(Path(sys.executable).with_name("heal"))
ROOT = Path(__file__).resolve().parents[2]


def run_id(stderr: str) -> str:
    """The error id ``heal run`` published, from its stderr."""
    return stderr.split("published ", 1)[1].split(None, 1)[0].rstrip(";")


def run_and_explain(env: dict[str, str], cwd: Path, *command: str) -> tuple[str, str]:
    """heal run's stderr (the command failed) and ``heal explain --json`` of it."""
    done = subprocess.run([HEAL, "run", "--timeout", "120", "--", *command], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    explained = subprocess.run([HEAL, "explain", "--json", run_id(done.stderr)], env=env,
                               cwd=cwd, capture_output=True, text=True, timeout=120,
                               check=False)
    return done.stderr, explained.stdout


def apply(env: dict[str, str], cwd: Path, stderr: str) -> str:
    """``heal apply`` of the suggested fix (a MODERATE command runs when applied)."""
    done = subprocess.run([HEAL, "apply", run_id(stderr)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)
    return done.stdout + done.stderr


def calls(tmp: Path) -> list[str]:
    """What the shims ran, in order."""
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def shim_env(heal_env: dict[str, str], database: str, tmp: Path, shim: str,
             managers: tuple[str, ...], *programs: str) -> dict[str, str]:
    """heal's environment with PATH holding only ``managers`` as shims (``shim``, with
    ``{log}`` for calls.log), heal's Python, git and ``programs``: no other package manager."""
    shims = tmp / "shims"
    shims.mkdir(exist_ok=True)
    for name in managers:
        (shims / name).write_text(shim.format(log=tmp / "calls.log"))
        (shims / name).chmod(0o755)
    dirs = {str(Path(p).parent) for p in map(shutil.which, ("git", *programs)) if p}
    path = os.pathsep.join([str(shims), str(Path(sys.executable).parent), *sorted(dirs)])
    return {**os.environ, **heal_env, "HEAL_DATABASE_URL": database, "PATH": path,
            "PYTHONPATH": str(ROOT), "HEAL_PROGRESS": "0"}
