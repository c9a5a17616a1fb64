"""A person's overrides say who made them (QA s19b, defect 3): `heal breaker open|reset`,
`heal ignore`, `heal unquarantine` and a manual `heal apply` (with `--force`) append audit
records carrying `who` (HEAL_USER, else the login name, as `heal learn` records it), the
command (`via`) and the override flags; `heal breaker status` and `heal explain` show who.
Real `heal` subprocesses on the embedded engines, a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from storage.engines import open_database
from storage.lifecycle import LifecycleStore
from tests.integration._repos import git

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

APP = """import os
if not os.path.exists("audit.ok"):
    raise SystemExit("ERROR: ledger {token} refuses to open without its audit.ok marker")
"""


def _heal(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, **env, "PYTHONPATH": str(ROOT),
                                        "PYTHONDONTWRITEBYTECODE": "1"}, check=False)


def _records(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["HEAL_HOME"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_breaker_and_ignore_overrides_record_who(tmp_path: Path,
                                                 heal_env: dict[str, str]) -> None:
    env = {**heal_env, "HEAL_USER": "alice"}
    # When a person forces the breaker open with a reason, then resets it
    done = _heal(env, tmp_path, "breaker", "open", "workflow:nightly", "--reason", "maint")
    assert done.returncode == 0, done.stderr
    status = _heal(env, tmp_path, "breaker", "status")
    assert "(maint; by alice)" in status.stdout, status.stdout
    assert _heal(env, tmp_path, "breaker", "reset", "workflow:nightly").returncode == 0
    fp = f"{ALGORITHM_VERSION}:" + uuid.uuid4().hex[:16]
    assert _heal(env, tmp_path, "ignore", fp, "--reason", "noise").returncode == 0
    # Then each audit record says who did it and with which command
    records = [r for r in _records(env) if r["kind"] in ("breaker.transition",
                                                         "fingerprint.ignore")]
    assert [(r["kind"], r["data"].get("who"), r["data"].get("via")) for r in records] == [
        ("breaker.transition", "alice", "heal breaker open"),
        ("breaker.transition", "alice", "heal breaker reset"),
        ("fingerprint.ignore", "alice", "heal ignore"),
    ], records
    assert records[0]["data"]["reason"] == "maint" and records[2]["data"]["reason"] == "noise"
    # and the chain still verifies
    assert _heal(env, tmp_path, "audit", "verify", "--file-only").returncode == 0


def test_a_manual_forced_apply_and_an_unquarantine_record_who(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token))
    (repo / ".gitignore").write_text("audit.ok\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
    env = {**heal_env, "HEAL_WORKFLOW": f"wf-{token}", "HEAL_USER": "bob"}
    argv = ["run", "--timeout", "120", "--mode", "suggest", "--", sys.executable, "-c",
            "import app"]
    # (its own wording and marker: the engines are shared, and another file's lesson for a
    # similar error must not answer it; the error is named by its id, not --last)
    first_out = repo.parent / "first.json"
    assert _heal(env, repo, *argv[:1], "--json-file", str(first_out), *argv[1:]).returncode == 1
    first = json.loads(first_out.read_text())
    taught = _heal(env, repo, "learn", first["error_id"], "--command", "touch audit.ok")
    assert taught.returncode == 0, taught.stdout + taught.stderr
    out = repo.parent / "decision.json"
    suggested = _heal(env, repo, *argv[:1], "--json-file", str(out), *argv[1:])
    decision = json.loads(out.read_text())
    assert decision["decision"] == "suggested", (decision, suggested.stderr)
    seen = len(_records(env))
    # When bob applies it by hand, overriding the rails with --force
    applied = _heal(env, repo, "apply", decision["error_id"], "--force")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # Then the records it caused say bob, heal apply, force
    mine = [r for r in _records(env)[seen:] if r["kind"] in ("apply.intent", "apply")]
    assert {r["kind"] for r in mine} == {"apply.intent", "apply"}, mine
    for r in mine:
        assert (r["data"].get("who"), r["data"].get("via"), r["data"].get("force")) == \
            ("bob", "heal apply", True), r
    # When carol lifts a quarantine of the pair (quarantined here by hand)
    fine, fix_id = decision["fingerprint"], decision["fix"]["id"]
    db = open_database(heal_env_settings(heal_env))
    try:
        LifecycleStore(db).quarantine(fine, fix_id, "reverted in a test")
    finally:
        db.close()
    lifted = _heal({**env, "HEAL_USER": "carol"}, repo, "unquarantine", fine,
                   "--reason", "fixed upstream")
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    last = _records(env)[-1]
    assert last["kind"] == "lifecycle.transition" and last["data"]["who"] == "carol", last
    assert last["data"]["via"] == "heal unquarantine", last
    # and heal explain's lifecycle section says who lifted it and why
    explained = _heal(env, repo, "explain", fine)
    assert "QUARANTINED -> DRAFT (fixed upstream, by carol)" in explained.stdout, \
        explained.stdout


def heal_env_settings(heal_env: dict[str, str]) -> Any:
    from pipeline.config import Settings

    return Settings.from_env(heal_env)
