"""``HEAL_AUDIT_KEY`` (QA report qa_walk, item 6): set on an installation whose log
``audit.key`` sealed, ``heal audit verify`` said only "TAMPERED at record 1 ... (record edited
or re-sealed)"; and a 1-character key was taken without a word, where HEAL_SIGNING_KEY needs
32 characters. Each test runs this checkout's heal as a subprocess on a log heal wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.guardrails.audit import AuditLog

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
GOOD_KEY = "a-shared-audit-key-0123456789abcdef"


def _heal(home: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(PYTHONPATH=str(ROOT), HEAL_HOME=str(home))
    if key is not None:
        env["HEAL_AUDIT_KEY"] = key
    return subprocess.run([*HEAL, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def sealed_with_the_file_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HEAL_HOME whose audit.jsonl heal sealed with its own audit.key."""
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    home = tmp_path / "home"
    log = AuditLog(Settings(None, None, home, "p"), anchored=False)
    log.append("fingerprint.ignore", "fp-1", {"reason": "noise"})
    log.append("fingerprint.ignore", "fp-2", {"reason": "noise"})
    assert (home / "audit.key").exists()
    return home


def test_verify_with_another_key_than_the_writers_names_the_key_to_use(
        sealed_with_the_file_key: Path) -> None:
    home = sealed_with_the_file_key
    # When the operator sets a HEAL_AUDIT_KEY (as the table advises for several hosts) and
    # verifies the log audit.key sealed
    done = _heal(home, "audit", "verify", "--file-only", key=GOOD_KEY)
    # Then the first record fails (exit 1), and the message says the key may be the wrong one
    assert done.returncode == 1, done
    first = done.stdout.splitlines()[0]
    assert "at record 1 (after 0 good)" in first, first
    assert "the key may be the wrong one" in first, first
    assert f"HEAL_AUDIT_KEY is set and used instead of {home / 'audit.key'}" in first, first
    assert "unset HEAL_AUDIT_KEY" in first, first
    # and without it, the file's own key verifies the chain
    done = _heal(home, "audit", "verify", "--file-only")
    assert done.returncode == 0 and "ok, 2 record(s), chain intact" in done.stdout, done


@pytest.mark.parametrize("key", ["x", "short-key", " " * 40, "k" * 31])
def test_a_heal_audit_key_too_short_to_be_a_secret_is_refused(
        sealed_with_the_file_key: Path, key: str) -> None:
    # When HEAL_AUDIT_KEY is set to something no secret is
    for args in (("audit", "verify", "--file-only"), ("status", "--json")):
        done = _heal(sealed_with_the_file_key, *args, key=key)
        # Then every command refuses it before any work (exit 2), saying what to set,
        # never printing it
        assert done.returncode == 2, done
        assert "HEAL_AUDIT_KEY is set but holds" in done.stderr, done.stderr
        assert "needs at least 32" in done.stderr and "unset it" in done.stderr, done.stderr
        assert "short-key" not in done.stderr
        assert done.stdout == "", done.stdout
