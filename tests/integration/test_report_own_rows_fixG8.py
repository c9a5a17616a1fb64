"""``heal report``'s rows are each error's own (QA report qa_s18b, defect 12): errors of one
group escalated several times each read as the error that happened, not as the group's sample,
and an error published with ``heal emit`` (no attempt text, no queued sample) is not an empty
row; ``heal learn``'s hint names the list that shows what it asks for (defect 13). Real CLI
in subprocesses, the real stages on the embedded engines, a database of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.runtime import drain_inline

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(args: list[str], cwd: Path, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI"))}
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, input=stdin,
                          check=False)


def _repo(tmp_path: Path) -> Path:
    root = (tmp_path / "repo").resolve()
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_report_rows_are_each_errors_own(tmp_path: Path, heal_env: dict[str, str],
                                         own_database: str) -> None:
    root = _repo(tmp_path)
    tag = uuid.uuid4().hex[:8]
    # Given three failures of one group (an id-like line masks to one key), each escalated
    lines = [f"job-{tag}{n}x7q-stalled" for n in range(3)]
    for line in lines:
        done = _heal(["run", "--timeout", "120", "--", "sh", "-c", f"echo '{line}' >&2; exit 3"],
                     root)
        assert done.returncode == 3, done.stderr
    # and an error published with heal emit, decided by the stages
    emitted = f"emit-{tag}"
    event = {"v": 1, "id": emitted, "text": "ModuleNotFoundError: No module named 'toml_x'\n"}
    done = _heal(["emit"], root, stdin=json.dumps(event) + "\n")
    assert done.returncode == 0, done.stderr
    drain_inline(Settings.from_env(), redis.Redis.from_url(heal_env["HEAL_REDIS_URL"]))

    # When the operator asks for the report
    done = _heal(["report", "--since", "1h", "--format", "json"], root)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rows = {r["error_id"]: r["error"] for r in (*data["healings"], *data["escalations"])}
    # Then each escalation reads as its own error (before: all three the group's sample)
    shown = sorted(e for e in rows.values() if tag in e)
    assert shown == sorted(f"exit 3: {line}" for line in lines), rows
    # and the emitted error's row says what failed (before: an empty headline)
    assert rows.get(emitted) == "ModuleNotFoundError: No module named 'toml_x'", data
    text = _heal(["report", "--since", "1h"], root)
    assert all(line in text.stdout for line in lines), text.stdout


def test_learns_hint_names_the_list_that_shows_fingerprints(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    root = _repo(tmp_path)
    # Given a repository with nothing unmatched and one queued group elsewhere
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    run = _heal(["run", "--mode", "observe", "--timeout", "120", "--json", "--", "sh", "-c",
                 "echo 'QuotaError: bucket q-17 is full' >&2; exit 1"], other)
    fine = json.loads(run.stderr.strip().splitlines()[-1])["fingerprint"]
    # When heal learn --last finds nothing to teach
    done = _heal(["learn", "--last", "--command", "true"], root)
    assert done.returncode == 2, done.stderr
    # Then its hint names a list, and that list does show the fingerprints it asks for
    assert "heal issues list --by-fingerprint" in done.stderr, done.stderr
    listed = _heal(["issues", "list", "--by-fingerprint"], root)
    assert listed.returncode == 0 and fine in listed.stdout, listed.stdout
    # and so does an unknown name's hint
    done = _heal(["learn", f"{V}:{uuid.uuid4().hex[:16]}", "--command", "true"], root)
    assert done.returncode == 2 and "heal issues list --by-fingerprint" in done.stderr
