"""A fingerprint named on the command line (``heal ignore``, ``unquarantine``, ``explain``,
``learn``) is checked in one place (pipeline/cli/fpargs.py): a text that claims to be one and
is none exits 2 saying what to change, with its control characters escaped, and nothing is
stored. Run through the CLI in a subprocess on the session's engines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from storage.engines import open_database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


def _heal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run([*HEAL, *args], cwd=ROOT, env={**full, **env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


def _controls(fingerprint: str) -> int:
    db = open_database(Settings.from_env())
    try:
        return int(db.fetchval("SELECT count(*) FROM fingerprint_controls WHERE fingerprint = $1",
                               fingerprint))
    finally:
        db.close()


@pytest.mark.parametrize("given", [
    "fp-v6:doesnotexist", "fp-v9:0123456789abcdef", "fp-v6:a b", "fp-v6:../../etc",
    "fp-v6:0123456789abcdef0", "fp-x", "not-a-fingerprint", "fp-v6:\x1b[31mred",
])
def test_heal_ignore_refuses_what_is_no_fingerprint(heal_env: dict[str, str], given: str) -> None:
    done = _heal(heal_env, "ignore", given)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "is no fingerprint" in done.stderr and "16 hex digits" in done.stderr
    assert "\x1b" not in done.stderr + done.stdout  # shown escaped, never sent
    assert _controls(given.strip()) == 0


def test_an_unknown_version_names_the_known_ones(heal_env: dict[str, str]) -> None:
    done = _heal(heal_env, "ignore", "fp-v9:0123456789abcdef")
    assert done.returncode == 2
    assert "fp-v1" in done.stderr and "not fp-v9" in done.stderr


def test_a_whole_fingerprint_is_ignored_in_advance_and_an_older_version_is_refused(
        heal_env: dict[str, str]) -> None:
    from pipeline.fingerprint.hashing import ALGORITHM_VERSION, VERSIONS

    whole = f"{ALGORITHM_VERSION}:0123456789ABCDEF"
    done = _heal(heal_env, "ignore", whole)
    assert done.returncode == 0, done.stderr
    assert _controls(whole.lower()) == 1  # hex digits as heal prints them
    older = [v for v in VERSIONS if v != ALGORITHM_VERSION][0]
    done = _heal(heal_env, "ignore", f"{older}:fedcba9876543210")
    assert done.returncode == 2 and "older algorithm version" in done.stderr
    assert _controls(f"{older}:fedcba9876543210") == 0


@pytest.mark.parametrize("args", [
    ["unquarantine", "fp-v6:nothex"], ["explain", "fp-v6:nothex"], ["explain", "fp-v99:ab"],
    ["learn", "fp-v6:nothex", "--escalate", "call someone"],
])
def test_every_command_taking_a_fingerprint_refuses_a_malformed_one(
        heal_env: dict[str, str], args: list[str]) -> None:
    done = _heal(heal_env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is no fingerprint" in done.stderr and "Traceback" not in done.stderr


def test_unquarantine_of_a_name_that_is_neither_fix_nor_fingerprint_exits_2(
        heal_env: dict[str, str]) -> None:
    done = _heal(heal_env, "unquarantine", "no/such-fix")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nor a fix id heal knows" in done.stderr
