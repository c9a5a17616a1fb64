"""A rollback git cannot make is said, counted and never turned into a suggestion (real git,
Redis and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

#: fails like ``ruff format --check``; in the user's tree (marked by an untracked file, which a
#: verification worktree does not have) it also edits the file the fix touched and fails
CHECK = """\
import os
import subprocess
import sys

p = subprocess.run(["ruff", "format", "--check", "shop"], capture_output=True, text=True)
sys.stdout.write(p.stdout)
if os.path.exists("marker.local"):
    with open("shop/discount.py", "a") as f:
        f.write("# touched by the test run\\n")
    sys.exit(1)
sys.exit(p.returncode)
"""


def test_a_rollback_git_refuses_is_escalated_naming_the_commit_and_counted(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, attempt_store: AttemptStore) -> None:
    # Given a verified formatting fix and a failing step that, re-run in the user's tree,
    # dirties the very file the fix changed
    root = sample_repo(tmp_path)
    break_formatting(root)
    (root / "check.py").write_text(CHECK)
    git(root, "add", "check.py")
    git(root, "commit", "-q", "-m", "check")
    verdict = validator.validate(candidate(root, ("python", "check.py"), FORMAT_FIX))
    assert verdict.decision == "apply", verdict.reason
    (root / "marker.local").write_text("")
    # When it is applied, the re-run fails and git cannot revert over the dirty file
    outcome = applier.handle(verdict)
    # Then the outcome says the rollback could not be made and what to revert by hand
    assert outcome.status == "escalated", outcome.detail
    assert "still failing after applying (exit 1)" in outcome.detail
    assert "the rollback could not be made" in outcome.detail
    assert "shop/discount.py" in outcome.detail
    assert f"git revert {outcome.commit}" in outcome.detail
    assert git(root, "rev-parse", "HEAD") == outcome.commit
    # and the user's uncommitted edit is kept
    assert (root / "shop/discount.py").read_text().endswith("# touched by the test run\n")
    # and the breaker counts the fix that did not hold
    status = CircuitBreaker(client, stage_settings).status()
    assert status["scopes"]["global"]["reverts_in_window"] == 1, status
    # and a redelivery answers the same, never "suggested"
    assert applier.handle(verdict) == outcome
    row = attempt_store.apply_result(verdict.error_id)
    assert row is not None and row["status"] == "escalated"
