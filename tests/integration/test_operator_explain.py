"""`heal explain` on records a real error left behind (real embedded engines)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import FingerprintEvent
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from storage.engines import open_database


def _word() -> str:
    # letters only: digits and hex would be masked by normalization, and the shared test
    # database must not already know this error
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def _fine_of_last_error(heal_env: dict[str, str]) -> str:
    """The fine fingerprint the fingerprint stage published, once the lookup stage's buffered
    occurrence reached PostgreSQL (its background sync runs every 2 s)."""
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    (entry,) = client.xrange(settings.stream("fingerprints"))
    fine = FingerprintEvent.decode(entry[1][b"event"]).fine
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not db.fetchval(
                "SELECT count(*) FROM occurrences WHERE fine = $1", fine):
            time.sleep(0.2)
    finally:
        db.close()
    return fine


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_explain_a_matched_error_end_to_end(
        heal_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(_repo(tmp_path))
    module = f"heal_missing_{_word()}"
    assert main(["run", "--timeout", "60", "--", sys.executable, "-c", f"import {module}"]) == 1
    capsys.readouterr()
    fine = _fine_of_last_error(heal_env)
    assert fine.startswith(ALGORITHM_VERSION + ":")

    code, out, err = _run(["explain", fine, "--json"], capsys)
    assert code == 0, err
    story = json.loads(out)
    assert story["fingerprint"] == fine and story["level"] == "fine"
    assert module in story["sample"]
    assert story["lookup"]["paths"], story["lookup"]
    assert story["attempts"][0]["decision"]
    assert story["outcomes"][0]["status"]
    assert story["why"].startswith("last outcome suggested")
    assert story["last_event"]["status"] == story["outcomes"][0]["status"] == "suggested"
    assert story["problems"] == []

    code, out, err = _run(["explain", fine[:12]], capsys)  # a unique prefix, text output
    assert code == 0, err
    assert f"fingerprint {fine} (fine)" in out
    assert "lookup path:" in out and "tier " in out and "attempts (newest first):" in out

    coarse = story["lookup"]["paths"][0]["coarse"]  # the coarse group holds this fine one
    code, out, err = _run(["explain", coarse, "--json"], capsys)
    assert code == 0, err
    group = json.loads(out)
    assert group["level"] == "coarse" and fine in group["fines"]


def test_explain_an_escalation_reads_its_reason_and_text_from_the_stream(
        heal_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # a syntax error is matched to an escalate fix: no attempt row, no issue-queue sample
    monkeypatch.chdir(_repo(tmp_path))
    name = _word()
    assert main(["run", "--timeout", "60", "--", sys.executable, "-c",
                 f"def {name}(:\n    pass"]) == 1
    capsys.readouterr()
    fine = _fine_of_last_error(heal_env)
    code, out, err = _run(["explain", fine, "--json"], capsys)
    assert code == 0, err
    story = json.loads(out)
    assert story["attempts"] == [] and story["issues"] == []
    assert story["last_event"]["status"] == "escalated"
    assert story["why"].startswith("last outcome escalated: ")
    assert name in story["sample"] and "SyntaxError" in story["sample"]


def test_unknown_and_ambiguous_fingerprints(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["explain", f"{ALGORITHM_VERSION}:zzzz-not-a-fingerprint"], capsys)
    assert code == 2 and "is no fingerprint" in err and "Traceback" not in err  # malformed
    code, out, err = _run(["explain", f"{ALGORITHM_VERSION}:{uuid.uuid4().hex[:16]}"], capsys)
    assert code == 1 and "no record of fingerprint" in err and "Traceback" not in err
    # every fingerprint shares the bare version prefix
    code, out, err = _run(["explain", f"{ALGORITHM_VERSION}:"], capsys)
    assert code == 2 and "give more characters" in err
