"""``heal audit verify`` says when the ``audit_log`` table is short of file records heal
writes with the database (the file has them, the table does not), instead of a bare "file
vs table: ok" (QA s15a #3). Runs heal's CLI from this tree as a subprocess, on the embedded
engines of a fresh HEAL_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main())"
#: what the apply stage's audit() did during a PostgreSQL outage before QA s15a #3, and what
#: heal apply's still does: the file record is written, the table's is only logged as failed
FILE_ONLY = """
from dataclasses import dataclass
from typing import Any
from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.validate.audit import audit

class Down:
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")

@dataclass
class Store:
    db: Any

audit(Settings.from_env(), Store(Down()), "apply", "e-outage",
      {"fix_id": "fmt", "status": "applied", "detail": "", "commit": "", "revert_commit": ""})
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX",
                        "HEAL_AUDIT_KEY"}}
    env["HEAL_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(home: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=_env(home), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def home() -> Iterator[Path]:
    """A HEAL_HOME whose embedded engines heal started (not under pytest's basetemp: as root
    the embedded PostgreSQL's own user must traverse every parent of its data)."""
    base = Path(tempfile.mkdtemp(prefix="heal-unwitnessed-"))
    path = base / "home"
    started = _run(path, CLI, "engines", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield path
    finally:
        _run(path, CLI, "engines", "stop", "--force")
        shutil.rmtree(base, ignore_errors=True)


def test_audit_verify_names_file_records_the_table_is_short_of(home: Path) -> None:
    # Given a decision whose table record PostgreSQL missed, between two that have theirs
    for step in ("a", "outage", "b"):
        if step == "outage":
            done = _run(home, FILE_ONLY)
        else:
            done = _run(home, CLI, "ignore", f"{V}:{ord(step[0]):016x}", "--reason", "noise")
        assert done.returncode == 0, done.stdout + done.stderr
    # When the operator verifies the log, Then both chains are intact, and verify says the
    # table is short of that record (kind and file seq), instead of a bare "ok"
    verified = _run(home, CLI, "audit", "verify")
    out = verified.stdout + verified.stderr
    assert verified.returncode == 0, out
    assert "file vs table: ok" in out
    assert "file vs table: 1 file record(s) that heal writes with the database have no " \
           "audit_log table record (apply 1; file seq 2)" in out, out
