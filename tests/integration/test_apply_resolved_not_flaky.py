"""`heal apply` of a second, stale suggestion of one failure that the first applied fix
already resolved (real `heal run` / `heal learn` / `heal apply` subprocesses, a real git
repository, the embedded engines): the step passes because of heal's own fix, which is not
flakiness. The outcome is `skipped` naming the fix that resolved it, and the fingerprint's
determinism is untouched (no retry playbook afterwards)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.apply.applier import Applier
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import candidate, sample_repo
from tests.integration._repos import git

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

APP = """import os


class WorkspaceNotReadyError(Exception):
    pass


if not os.path.exists("ready.flag"):
    raise WorkspaceNotReadyError("workspace {token} is not ready: ready.flag is missing")
"""


def _heal(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, **env, "PYTHONPATH": str(ROOT),
                                        "PYTHONDONTWRITEBYTECODE": "1"}, check=False)


def _run(env: dict[str, str], repo: Path, mode: str) -> dict[str, Any]:
    """`heal run` of the failing step; its decision (``--json-file``)."""
    out = repo.parent / f"decision-{uuid.uuid4().hex[:6]}.json"
    done = _heal(env, repo, "run", "--json-file", str(out), "--timeout", "120", "--mode", mode,
                 "--", sys.executable, "-c", "import app")
    assert done.returncode == 1, done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    report["stderr"] = done.stderr
    return report


def test_a_stale_second_suggestion_of_a_resolved_failure_is_skipped_not_flaky(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token))
    (repo / ".gitignore").write_text("ready.flag\n")  # the fix acts on what git ignores
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
    env = {**heal_env, "HEAL_WORKFLOW": f"wf-{token}"}

    first = _run(env, repo, "suggest")
    assert first["decision"] == "escalated", first
    taught = _heal(env, repo, "learn", "--last", "--command", "touch ready.flag")
    assert taught.returncode == 0, taught.stdout + taught.stderr
    fix_id = taught.stdout.split("fix        ", 1)[1].split()[0]

    # Given two suggestions of the same failure at the same commit (two modes: two requests)
    a = _run(env, repo, "suggest")
    b = _run(env, repo, "auto-safe")
    for report in (a, b):
        assert report["decision"] == "suggested" and report["fix"]["id"] == fix_id, report
        # each names its own error id to apply (two wait: the fix id would be refused)
        assert f"heal apply {report['error_id']}" in report["detail"], report["detail"]
        assert f"heal apply {fix_id}" not in report["detail"], report["detail"]
    ids = [a["error_id"], b["error_id"]]
    fine = a["fingerprint"]
    # When the second one is applied (the step passes), then the first, stale one
    applied = _heal(env, repo, "apply", ids[1])
    assert applied.returncode == 0 and "applied:" in applied.stdout, applied.stdout
    stale = _heal(env, repo, "apply", ids[0])
    # Then the stale one is "already resolved", naming the fix that resolved it; not flaky
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "skipped: already resolved" in stale.stdout, stale.stdout
    assert f"fix {fix_id} was applied here for error {ids[1]}" in stale.stdout, stale.stdout
    assert "flaky:" not in stale.stdout

    # And the fingerprint stays deterministic: the failure again gets its real fix
    explained = _heal(env, repo, "explain", fine, "--json")
    assert explained.returncode == 0, explained.stderr
    determinism = json.loads(explained.stdout)["determinism"]
    assert determinism["flaky"] is False and determinism["score"] >= 0.5, determinism
    (repo / "ready.flag").unlink()
    again = _run(env, repo, "suggest")
    assert again["fix"]["id"] == fix_id, again
    assert "flaky" not in again["detail"], again["detail"]


def test_a_step_passing_after_the_branch_moved_is_resolved_not_flaky(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    fix = {"id": "test.moved/fix", "pattern_id": "test.moved", "kind": "command",
           "category": "MODERATE", "state": "ACTIVE", "title": "touch",
           "rendered": {"argv": ["touch", "unused.flag"], "timeout_s": 30}}
    # Given a suggestion for a failure seen at one commit
    verdict = validator.validate(candidate(root, ("sh", "-c", "test -f done.txt"), fix,
                                           mode="suggest"))
    assert verdict.decision == "suggest", verdict.reason
    # When a commit since then resolved it, and the suggestion is applied
    (root / "done.txt").write_text("done\n")
    git(root, "add", "done.txt")
    git(root, "commit", "-q", "-m", "resolve it")
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    # Then it is already resolved (not a flaky pass of the error's commit); nothing ran
    assert outcome.status == "skipped", outcome.detail
    assert "the branch moved since the error was seen" in outcome.detail, outcome.detail
    assert not (root / "unused.flag").exists()
