"""Secrets that are not text, and an audit key file that is no key (QA s15d, items 6 and 7).

A ``HEAL_AUDIT_KEY`` holding bytes that are not UTF-8 (``os.environ`` keeps them as lone
surrogates) was "internal error: UnicodeEncodeError" in ``heal audit verify`` and ``heal
ignore``, and ``heal run`` dead-lettered its event with a traceback; a ``HEAL_SERVE_TOKEN``
like it let ``heal serve`` start and answer every authenticated request with a 500. An emptied
``audit.key`` was used as the key: the next record was sealed with it and the chain was broken
for good. Each secret is now checked where it is read, at start-up: a ConfigError (exit 2)
naming the variable or file and what to do. Each test runs this checkout's heal as a
subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.guardrails.audit import AuditLog

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
#: 36 good characters then two bytes that are not UTF-8, as os.environ holds them
NOT_TEXT = "abcdefghijklmnopqrstuvwxyz0123456789" + b"\xff\xfe".decode("utf-8", "surrogateescape")


def _heal(home: Path, *args: str, cwd: Path = ROOT, timeout: float = 120,
          **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(PYTHONPATH=str(ROOT), HEAL_HOME=str(home), **env_vars)
    return subprocess.run([*HEAL, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with a message holding ``words``, and no traceback or internal error."""
    assert done.returncode == 2, done
    for word in words:
        assert word in done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HEAL_HOME whose audit.jsonl heal sealed with its own audit.key."""
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)
    home = tmp_path / "home"
    log = AuditLog(Settings(None, None, home, "p"), anchored=False)
    log.append("fingerprint.ignore", "fp-1", {"reason": "noise"})
    log.append("fingerprint.ignore", "fp-2", {"reason": "noise"})
    assert (home / "audit.key").exists()
    return home


def test_a_heal_audit_key_that_is_not_text_is_refused_at_start_up(
        sealed: Path, tmp_path: Path) -> None:
    # When HEAL_AUDIT_KEY holds bytes that are not UTF-8, each command refuses it (exit 2),
    # naming the variable and what to do: no internal error
    for args in (("audit", "verify", "--file-only"), ("ignore", f"{V}:0123456789abcdef")):
        done = _heal(sealed, *args, HEAL_AUDIT_KEY=NOT_TEXT)
        _refused(done, "HEAL_AUDIT_KEY is not valid text (character 37",
                 "unset it to key the log with $HEAL_HOME/audit.key")
    # and heal run refuses before it runs the command: nothing is dead-lettered
    marker = tmp_path / "ran"
    done = _heal(sealed, "run", "--", sys.executable, "-c",
                 f"open({str(marker)!r}, 'w'); raise SystemExit(3)", HEAL_AUDIT_KEY=NOT_TEXT)
    _refused(done, "HEAL_AUDIT_KEY is not valid text")
    assert "dead letter" not in done.stderr and not marker.exists(), done


@pytest.mark.parametrize("variable", ["HEAL_SIGNING_KEY", "HEAL_SIGNING_KEY_PREVIOUS"])
def test_a_signing_key_that_is_not_text_is_refused(tmp_path: Path, variable: str) -> None:
    env = {variable: NOT_TEXT}
    if variable == "HEAL_SIGNING_KEY_PREVIOUS":
        env["HEAL_SIGNING_KEY"] = "k" * 16 + "0123456789abcdefghij"
    done = _heal(tmp_path / "home", "keys", "show", **env)
    _refused(done, f"{variable} is not valid text (character 37")


@pytest.mark.parametrize("variable", ["HEAL_SERVE_TOKEN", "HEAL_SERVE_VIEWER_TOKEN"])
def test_heal_serve_refuses_a_token_that_is_not_text_before_it_starts(
        tmp_path: Path, variable: str) -> None:
    # When heal serve starts with a token that holds bytes that are not UTF-8 (it used to
    # start, then answer every authenticated request with a 500)
    done = _heal(tmp_path / "home", "serve", "--port", "0", timeout=60, **{variable: NOT_TEXT})
    # Then it refuses before it listens, naming the variable
    _refused(done, f"{variable} is not valid text (character 37")
    assert "listening" not in done.stdout + done.stderr


def test_heal_serve_refuses_a_token_file_that_is_not_text(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "serve"
    folder.mkdir(parents=True, mode=0o700)
    token = folder / "approver.token"
    token.write_bytes(b"abcdefghijklmnopqrstuvwxyz\xff\xfe0123456789\n")
    token.chmod(0o600)
    done = _heal(home, "serve", "--port", "0", timeout=60)
    _refused(done, f"the token in {token} is not text (byte 26 is not UTF-8)",
             "delete the file so heal serve makes a new one")


@pytest.mark.parametrize("content", [b"", b"x", b"\n", b"0123456789abcdef0123456789abcde\n",
                                     b"CHANGE_ME-" + b"0" * 40, b"\xff" * 64])
def test_an_audit_key_file_that_is_no_key_is_refused_and_nothing_is_sealed_with_it(
        heal_env: dict[str, str], content: bytes) -> None:
    home = Path(heal_env["HEAL_HOME"])
    engines = {k: v for k, v in heal_env.items() if k != "HEAL_HOME"}
    # Given a log heal wrote (and anchored) with its own audit.key
    for fingerprint in (f"{V}:0123456789abcdef", f"{V}:fedcba9876543210"):
        assert _heal(home, "ignore", fingerprint, **engines).returncode == 0
    key, log = home / "audit.key", home / "audit.jsonl"
    good, before = key.read_bytes(), log.read_bytes()
    # and then the key emptied, cut short, left as the placeholder or damaged
    key.write_bytes(content)
    # When a command would append a record, and when the log is verified
    ignore = _heal(home, "ignore", f"{V}:00112233445566ff", **engines)
    verify = _heal(home, "audit", "verify", **engines)
    # Then both refuse it (exit 2), saying to restore it rather than delete it, and nothing
    # was sealed with it
    for done in (ignore, verify):
        _refused(done, f"audit key {key}", "restore it from a backup",
                 "every record already in the log would then fail heal audit verify")
    assert log.read_bytes() == before
    # and once it is restored the chain still verifies
    key.write_bytes(good)
    done = _heal(home, "audit", "verify", **engines)
    assert done.returncode == 0 and "chain intact" in done.stdout, done
