"""Verification in a git worktree with RQ jobs on the real Redis; records in real PostgreSQL."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, break_side_effect_import, git
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import (
    FORMAT_FIX,
    LINT_FIX,
    candidate,
    sample_repo,
)


def test_verified_fix_gets_a_branch_with_trailers_and_stored_evidence(
        tmp_path: Path, validator: Validator, attempt_store: AttemptStore) -> None:
    # Given a repository whose formatting check fails
    root = sample_repo(tmp_path)
    break_formatting(root)
    head = git(root, "rev-parse", "HEAD")
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX)
    # When the candidate is validated
    verdict = validator.validate(cand)
    # Then it was verified in a worktree and approved for auto-safe
    assert verdict.decision == "apply", verdict.reason
    assert verdict.branch == f"heal/{cand.fine}-1"
    runs = {(r["phase"], r["name"]): r["exit_code"] for r in verdict.verification}
    assert runs[("before", "failing-command")] != 0
    assert runs[("after", "failing-command")] == 0
    assert runs[("after", "tests")] == 0
    message = git(root, "log", "-1", "--format=%B", verdict.branch)
    assert "Healed-by: heal" in message and "Heal-Fix: format.ruff_format" in message
    assert f"Heal-Fingerprint: {cand.fine}" in message
    # and the user's branch and work tree were not touched
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "worktree", "list").count("\n") == 0
    # and every vote and run is stored
    assert [v["judge"] for v in attempt_store.votes(cand.error_id)] == ["verification"]
    assert len(attempt_store.runs(cand.error_id)) == 4
    attempt = attempt_store.attempt(cand.error_id)
    assert attempt is not None and attempt["decision"] == "apply"


def test_fix_that_breaks_a_passing_check_is_rejected_and_its_branch_discarded(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_side_effect_import(root)
    cand = candidate(root, ("ruff", "check", "."), LINT_FIX)
    verdict = validator.validate(cand)
    assert verdict.decision == "reject"
    assert "breaks checks that passed before: tests" in verdict.reason
    assert verdict.branch == ""
    assert "heal/" not in git(root, "branch", "--list")


def test_failure_that_does_not_reproduce_proves_nothing(
        tmp_path: Path, validator: Validator) -> None:
    # Given a failure caused by an untracked file in the user's tree (absent in a worktree)
    root = sample_repo(tmp_path)
    break_formatting(root)
    (root / "junk.txt").write_text("x\n")
    cand = candidate(root, ("test", "!", "-e", "junk.txt"), FORMAT_FIX)
    verdict = validator.validate(cand)
    assert verdict.decision == "reject"
    assert "does not reproduce" in verdict.reason


def test_redelivery_returns_the_same_verdict(tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX)
    first = validator.validate(cand)
    second = validator.validate(cand)
    assert second == first


@pytest.mark.parametrize(("mode", "decision"), [("observe", "observe"), ("suggest", "suggest")])
def test_modes(tmp_path: Path, validator: Validator, mode: str, decision: str) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(
        candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX, mode=mode))
    assert verdict.decision == decision
    if decision == "suggest":  # the error id: the fix id is refused when several wait
        assert f"heal apply {verdict.error_id}" in verdict.reason


def test_no_fix_and_escalate_fixes_escalate(tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    cand = candidate(root, ("false",), None)
    assert validator.validate(cand).decision == "escalate"
    esc = {"id": "x", "kind": "escalate", "category": "RISKY",
           "rendered": {"message": "look at the test"}}
    verdict = validator.validate(candidate(root, ("false",), esc))
    assert verdict.decision == "escalate" and "look at the test" in verdict.reason


def test_an_ignored_fingerprint_is_only_observed(tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    cand = replace(candidate(root, ("false",), None),
                   match={"pattern_id": None, "ignored": True,
                          "reason": "ignored with `heal ignore`: detected, never fixed"})
    verdict = validator.validate(cand)
    assert verdict.decision == "observe" and "heal ignore" in verdict.reason


def test_invalid_policy_keeps_the_last_valid_one_and_says_so(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    first = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX,
                                         mode=""))
    assert first.decision == "apply"  # heal.toml says auto-safe
    toml = root / "heal.toml"
    toml.write_text('mode = "whenever"\n')
    st = toml.stat()
    os.utime(toml, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    (root / "shop/more.py").write_text("x=1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "more")
    second = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX,
                                          mode=""))
    assert second.decision == "apply"  # still auto-safe: the last valid policy
    [note] = [c for c in second.preflight if c["name"] == "policy"]
    assert 'mode = "whenever"' in note["reason"]  # (spelled as TOML)
    assert "keeping the last valid policy" in note["reason"]


def test_moderate_command_is_deferred_to_apply(
        tmp_path: Path, validator: Validator, stage_settings: Settings,
        client: redis.Redis) -> None:
    from pipeline.apply.applier import Applier
    from pipeline.demo.sample import break_exec_bit

    root = sample_repo(tmp_path)
    break_exec_bit(root)
    fix = {"id": "t.chmod", "kind": "command", "category": "MODERATE", "state": "AUTOMATED",
           "rendered": {"argv": ["chmod", "+x", "scripts/build.sh"], "timeout_s": 10}}
    verdict = validator.validate(candidate(root, ("sh", "scripts/ci.sh"), fix, mode="auto"))
    assert verdict.decision == "apply" and verdict.verification == []  # nothing ran yet
    assert not os.access(root / "scripts/build.sh", os.X_OK)
    outcome = Applier(stage_settings, client).handle(verdict)
    assert outcome.status == "applied" and "failing step passes again" in outcome.detail
    assert os.access(root / "scripts/build.sh", os.X_OK)
