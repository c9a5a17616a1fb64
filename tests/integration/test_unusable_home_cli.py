"""A HEAL_HOME that cannot be created, and an audit log nothing could check (QA report
qa_walk, items 1 and 12): ``heal status`` said "internal error: FileNotFoundError" (exit 1)
where every other command says "cannot create the state home ...; set HEAL_HOME to ..."
(exit 2), and ``heal audit verify`` said "ok, 0 record(s), chain intact" (exit 0) having read
no log and no witness. Each test runs this checkout's heal as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
#: a folder the kernel refuses to create even for root (mkdir: ENOENT)
PROC_HOME = "/proc/heal-test-home"
WHAT_TO_DO = "set HEAL_HOME to a directory heal may create and write"


def _heal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run([*HEAL, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**base, **env, "PYTHONPATH": str(ROOT)}, timeout=120,
                          check=False)


@pytest.fixture
def proc_home() -> str:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    return PROC_HOME


@pytest.mark.parametrize("json_output", [False, True])
def test_status_refuses_a_home_it_cannot_create_like_every_command(
        proc_home: str, json_output: bool) -> None:
    # Given a HEAL_HOME nobody can create (root included), and the embedded engines
    # When the operator runs heal status
    done = _heal({"HEAL_HOME": proc_home}, "status", *(["--json"] if json_output else []))
    # Then it says which home and what to set, once, exit 2: no internal error
    assert done.returncode == 2, done
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert f"cannot create the state home {proc_home}" in done.stderr or \
        f"state home {proc_home}" in done.stderr, done.stderr
    assert done.stderr.count(WHAT_TO_DO) == 1, done.stderr
    if json_output:  # and still shows what it could: both engines, as configuration errors
        status = json.loads(done.stdout)
        assert status["ok"] is False
        assert all(info["config_error"] for info in status["engines"].values()), status


def test_audit_verify_refuses_a_home_it_cannot_create(proc_home: str) -> None:
    # Given a HEAL_HOME nobody can create: no log, and no witness can be started there
    # When the operator verifies the audit log
    done = _heal({"HEAL_HOME": proc_home}, "audit", "verify")
    # Then it refuses the home as every command does (exit 2), claiming no intact chain
    assert done.returncode == 2, done
    assert "chain intact" not in done.stdout and "internal error" not in done.stderr, done
    assert WHAT_TO_DO in done.stderr, done.stderr


def test_audit_verify_that_read_no_log_and_no_witness_says_nothing_was_checked(
        tmp_path: Path) -> None:
    # Given a HEAL_HOME with no audit log, and both witnesses out of reach
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": "redis://127.0.0.1:1",
           "HEAL_DATABASE_URL": "postgresql://127.0.0.1:1/heal"}
    for args in (["audit", "verify"], ["audit", "verify", "--file-only"]):
        # When the operator verifies the audit log (with the witnesses, then the file alone)
        done = _heal(env, *args)
        # Then nothing is called intact: it says what was missing, exit 1
        assert done.returncode == 1, done
        assert "chain intact" not in done.stdout, done.stdout
        assert "NOT CHECKED: the file does not exist, and no witness was read" in done.stdout
        assert "Traceback" not in done.stderr


def test_audit_verify_of_a_fresh_home_with_its_witnesses_says_no_log_yet(
        heal_env: dict[str, str]) -> None:
    # Given a fresh HEAL_HOME with reachable engines, none anchoring a head of its log
    # When the operator verifies the audit log
    done = _heal(heal_env, "audit", "verify")
    # Then there is nothing to check and it says so: no chain called intact, exit 0
    assert done.returncode == 0, done
    first = done.stdout.splitlines()[0]
    assert "audit.jsonl: ok, no audit log yet" in first and "chain intact" not in first, done
