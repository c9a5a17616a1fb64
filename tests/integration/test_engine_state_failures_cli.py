"""QA s15a #5, #6, #7, #10, #11: what the CLI says, through the real CLI in a subprocess, when a
state file under HEAL_HOME is damaged (the signing key, the local lookup cache, the embedded
Redis's append-only file) or the embedded Redis refuses writes: what to change, CMD's status
kept by `heal run`, never an internal error or a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
ROOT = Path(__file__).resolve().parents[2]


def _env(heal_env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return {**base, **heal_env, **extra, "PYTHONPATH": str(ROOT)}


def _heal(env: dict[str, str], *argv: str, cwd: Path | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _key_file_env(heal_env: dict[str, str], content: bytes) -> dict[str, str]:
    """heal's own key file (no HEAL_SIGNING_KEY), holding ``content``."""
    keys = Path(heal_env["HEAL_HOME"]) / "keys"
    keys.mkdir(parents=True, mode=0o700)
    (keys / "signing.key").write_bytes(content)
    (keys / "signing.key").chmod(0o600)
    env = _env(heal_env)
    env.pop("HEAL_SIGNING_KEY", None)
    env.pop("HEAL_SIGNING_KEY_PREVIOUS", None)
    return env


def test_a_signing_key_file_that_is_not_text_keeps_cmds_status_and_says_what_to_do(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #6: random bytes in keys/signing.key made `heal run` an internal error
    (UnicodeDecodeError): exit 1 instead of CMD's 3, no --json-file. `heal worker` said the
    same internal error."""
    env = _key_file_env(heal_env, b"\xff\xfe\x00\x9c\x81garbage\xc3")
    out = tmp_path / "decision.json"
    done = _heal(env, "run", "--json-file", str(out), "--", "sh", "-c", "echo boom >&2; exit 3",
                 cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "could not report the failure" in done.stderr, done.stderr
    assert "is not text" in done.stderr and "signing.key" in done.stderr, done.stderr
    assert "delete it so heal makes a new one" in done.stderr, done.stderr
    decision = json.loads(out.read_text())
    assert decision["decision"] == "not reported" and decision["exit_status"] == 3, decision
    worker = _heal(env, "worker", "fingerprint", timeout=60)
    assert worker.returncode == 2, worker.stderr
    assert "is not text" in worker.stderr and "internal error" not in worker.stderr


def test_a_too_short_signing_key_is_refused_by_heal_run_without_a_dead_letter(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s15a #7: `heal run` said it "will only diagnose" the event, then its inline stages
    printed a traceback for each of 5 attempts and dead-lettered it (they seal their work with
    the same key). Now nothing is published, with what to change, CMD's status kept."""
    env = _key_file_env(heal_env, b"")
    done = _heal(env, "run", "--", "sh", "-c", "echo boom >&2; exit 3", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "dead letter" not in done.stderr, done.stderr
    assert "will only diagnose" not in done.stderr, done.stderr
    assert "at least 32 characters" in done.stderr, done.stderr
    assert "nothing was published" in done.stderr, done.stderr
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    try:  # nothing of this test's prefix in Redis: no event, no dead letter
        assert list(client.scan_iter(f"{heal_env['HEAL_STREAM_PREFIX']}*")) == []
    finally:
        client.close()
