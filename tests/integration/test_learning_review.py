"""Review that teaches (real engines, a pseudo-terminal): `heal issues review` asks how each
unmatched group was resolved; a command answer (after a refused one) goes through the same
path as `heal learn`, and the taught fix is then offered for the same error."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline
from producers.publisher import Publisher
from storage.engines import open_database

HEAL = str(Path(sys.executable).parent / "heal")
TEXT = "FluxCapacitorError: capacitor {word} lost 88 charge units in /srv/flux/bank-7\n"


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _unmatched(heal_env: dict[str, str], text: str, run: str) -> str:
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    Publisher(client, settings).publish(ErrorEvent(id=f"rv-{uuid.uuid4().hex}", text=text,
                                                       tags={"run": run}))
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for row in db.fetch("SELECT fine, sample FROM issue_queue WHERE status = 'open'"):
                if text.strip() in row["sample"]:
                    return str(row["fine"])
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("the unmatched error never reached the issue queue")


def _pty(args: list[str], answers: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run heal with a pseudo-terminal, answering each prompt (a line ending in '? ' or ': ')."""
    master, slave = os.openpty()
    proc = subprocess.Popen([HEAL, *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, **env})
    os.close(slave)
    out, pending, answered = b"", list(answers), 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            asked = out.count(b"? ") + out.count(b"): ")
            if asked > answered and pending:
                os.write(master, (pending.pop(0) + "\n").encode())
                answered = asked
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_a_review_answer_teaches_a_fix_that_is_then_offered(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    run = _word()
    text = TEXT.format(word=_word())
    fine = _unmatched(heal_env, text, run)

    # a command with shell syntax is refused and asked again; then a plain one teaches
    code, out = _pty(["issues", "review", "--tag", f"run={run}"],
                     ["c", "reset-bank > /dev/null", "touch flux.reset"], heal_env)
    assert code == 0, out
    assert "resolved by a command [c]" in out and "shell syntax" in out, out
    assert "taught DRAFT pattern learned.h" in out, out
    assert "taught 1 fix(es)" in out, out

    db = open_database(Settings.from_env())
    try:
        row = db.fetchrow("SELECT p.id, p.provenance, f.id AS fix_id, f.state, f.template"
                          " FROM pattern_fingerprints x JOIN patterns p ON p.id = x.pattern_id"
                          " JOIN fixes f ON f.pattern_id = p.id WHERE x.fingerprint = $1", fine)
        status = db.fetchval("SELECT status FROM issue_queue WHERE fine = $1", fine)
    finally:
        db.close()
    assert row is not None and row["state"] == "DRAFT" and status == "learned"
    assert json.loads(row["provenance"])["source"] == "heal issues review"
    assert json.loads(row["template"])["argv"] == ["touch", "flux.reset"]

    # the same error is now offered the taught fix
    sample = tmp_path / "again.txt"
    sample.write_text(text)
    assert main(["diagnose", "--json", "--no-semantic", str(sample)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["match"]["pattern_id"] == row["id"]
    assert report["fix"]["id"] == row["fix_id"] and report["fix"]["state"] == "DRAFT"
