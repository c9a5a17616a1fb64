"""Learning from an agent transcript end to end (real engines): a failing tool call, the
agent's edit, the same command passing -> `heal learn --transcript` teaches the diff as a
DRAFT precedent, which a fresh copy of the broken repository is then offered, verified in a
worktree, under --mode suggest (never applied on its own)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.cli import main
from tests.integration._repos import git

BROKEN = ('class LedgerSkewError(Exception):\n    pass\n\n\n'
          'raise LedgerSkewError("ledger {token} skewed by 4 entries")\n')
FIXED_LINE = 'LEDGER = "{token}"\n'



def transcript(repo: Path, token: str, error: str) -> list[dict[str, object]]:
    cmd = f"{sys.executable} -c 'import app'"
    old = f'raise LedgerSkewError("ledger {token} skewed by 4 entries")\n'

    def use(call: str, name: str, args: dict[str, object]) -> dict[str, object]:
        return {"type": "assistant", "cwd": str(repo), "sessionId": "s1", "message": {
            "content": [{"type": "tool_use", "id": call, "name": name, "input": args}]}}

    def result(call: str, text: str, failed: bool) -> dict[str, object]:
        return {"type": "user", "cwd": str(repo), "sessionId": "s1", "message": {"content": [
            {"type": "tool_result", "tool_use_id": call, "content": text, "is_error": failed}]}}

    return [use("t1", "Bash", {"command": cmd}), result("t1", f"Exit code 1\n{error}", True),
            use("t2", "Read", {"file_path": str(repo / "app.py")}), result("t2", "...", False),
            use("t3", "Edit", {"file_path": str(repo / "app.py"), "old_string": old,
                               "new_string": FIXED_LINE.format(token=token)}),
            result("t3", "ok", False),
            use("t4", "Bash", {"command": cmd}), result("t4", "", False)]


def test_a_transcript_precedent_is_offered_verified_for_the_same_failure_in_a_copy(
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
    error = subprocess.run([sys.executable, "-c", "import app"], cwd=repo, capture_output=True,
                           text=True).stderr
    assert "LedgerSkewError" in error
    log = tmp_path / "session.jsonl"
    log.write_bytes(b"".join(orjson.dumps(o) + b"\n"
                             for o in transcript(repo, token, error)))

    assert main(["learn", "--transcript", str(log)]) == 0
    out = capsys.readouterr().out
    assert "learned DRAFT precedent learned.h" in out and "(diff, RISKY)" in out, out
    fix_id = out.split("learned DRAFT precedent ", 1)[1].split()[0]

    copy = tmp_path / "copy"
    subprocess.run(["git", "clone", "-q", str(repo), str(copy)], check=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    status = main(["run", "--timeout", "120", "--mode", "suggest", "--", sys.executable, "-c",
                   "import app"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert f"suggested fix {fix_id}" in err and "verified on branch heal/" in err, err
    assert "LedgerSkewError" in (copy / "app.py").read_text()  # nothing applied

    # a transcript without fail -> edit -> pass teaches nothing
    quiet = tmp_path / "quiet.jsonl"
    quiet.write_bytes(b"".join(orjson.dumps(o) + b"\n"
                               for o in transcript(repo, token, error)[:2]))
    assert main(["learn", "--transcript", str(quiet)]) == 0
    assert "no failing command that passed after edits" in capsys.readouterr().out


def test_learn_transcript_json_prints_one_json_object(
    tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a transcript with one fail -> edit -> pass sequence, and one without any
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(BROKEN.format(token=token))
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    error = subprocess.run([sys.executable, "-c", "import app"], cwd=repo, capture_output=True,
                           text=True).stderr
    log, quiet = tmp_path / "session.jsonl", tmp_path / "quiet.jsonl"
    lines = [orjson.dumps(o) + b"\n" for o in transcript(repo, token, error)]
    log.write_bytes(b"".join(lines))
    quiet.write_bytes(b"".join(lines[:2]))
    # When heal learn --transcript runs with --json
    assert main(["learn", "--transcript", str(log), "--json"]) == 0
    # Then stdout is one JSON object naming what was learned, and nothing else
    result = orjson.loads(capsys.readouterr().out)
    (learned,) = result["learned"]
    assert result["transcript"] == str(log) and result["skipped"] == []
    assert learned["fix_id"].startswith("learned.h") and learned["files"] == ["app.py"]
    assert learned["command"].endswith("-c 'import app'") and learned["pattern_id"]
    # and a transcript that teaches nothing is the same object, empty
    assert main(["learn", "--transcript", str(quiet), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "transcript": str(quiet), "learned": [], "skipped": []}


def test_heal_watch_transcript_learns_as_it_follows(
    tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(BROKEN.format(token=token))
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    error = subprocess.run([sys.executable, "-c", "import app"], cwd=repo, capture_output=True,
                           text=True).stderr
    log = tmp_path / "session.jsonl"
    log.write_bytes(b"".join(orjson.dumps(o) + b"\n"
                             for o in transcript(repo, token, error)))
    assert main(["watch", "--transcript", "--from-start", "--once", str(log)]) == 0
    err = capsys.readouterr().err
    assert "heal watch: published 1 event(s)" in err, err
    assert "heal watch: learned DRAFT precedent learned.h" in err, err
