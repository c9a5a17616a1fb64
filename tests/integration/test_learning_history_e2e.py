"""Learning from history end to end (real engines): a step fails under `heal run`, a person
fixes it in a commit whose trailer names the error group, the step passes (heal run records a
precedent); `heal learn --history --dry-run` lists both proposals and stores nothing, then
`heal learn --history` teaches them and the error is offered the fix."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from storage.engines import open_database
from tests.integration._repos import git

BROKEN = ('class TideTableError(Exception):\n    pass\n\n\n'
          'raise TideTableError("tide table {token} is 3 hours stale")\n')
FIXED = 'TIDES = "{token}"\n'



def queued(token: str) -> tuple[str, str]:
    db = open_database(Settings.from_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = db.fetchrow("SELECT fine, sample FROM issue_queue WHERE sample LIKE $1",
                              f"%{token}%")
            if row is not None:
                return str(row["fine"]), str(row["sample"])
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("the failure never reached the issue queue")


def test_history_proposes_then_teaches_fixes_named_by_commits_and_precedents(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(BROKEN.format(token=token))
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    run = ["run", "--timeout", "120", "--step", "tides", "--mode", "suggest", "--",
           sys.executable, "-c", "import app"]
    assert main(run) == 1
    fine, sample = queued(token)

    (repo / "app.py").write_text(FIXED.format(token=token))
    git(repo, "commit", "-q", "-am", f"refresh the tide table\n\nHeal-Fingerprint: {fine}")
    sha = git(repo, "rev-parse", "HEAD")
    assert main(run) == 0  # passes: heal run records the precedent too
    capsys.readouterr()

    assert main(["learn", "--history", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["proposals"]  # one object, as every --json
    assert {(p["source"], p["fine"]) for p in listed} >= {("commit", fine),
                                                          ("precedent", fine)}, listed
    assert any(p["ref"] == sha for p in listed)
    db = open_database(Settings.from_env())
    try:
        assert db.fetchval("SELECT count(*) FROM patterns WHERE source = 'learned'"
                           " AND provenance->>'fine' = $1", fine) == 0  # nothing stored
    finally:
        db.close()

    assert main(["learn", "--history"]) == 0
    out = capsys.readouterr().out
    assert f"from commit {sha[:12]}" in out and "(diff, RISKY)" in out, out

    again = tmp_path / "again.txt"
    again.write_text(sample)
    assert main(["diagnose", "--json", "--no-semantic", str(again)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fix"]["kind"] == "diff" and report["fix"]["state"] == "DRAFT", report
    assert report["match"]["pattern_id"].startswith("learned.h")
    assert main(["learn", "--history", "--since", "last week"]) == 2
