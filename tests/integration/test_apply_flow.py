"""Apply: verified commit onto the working branch, re-run, revert on failure, never twice;
playbooks step by step; suggestions applied on request (real git, Redis, PostgreSQL)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, break_stale_lock, git
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, lock_fix, sample_repo


def test_applied_once_even_when_delivered_twice(
        tmp_path: Path, validator: Validator, applier: Applier,
        attempt_store: AttemptStore) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    outcome = applier.handle(verdict)
    assert outcome.status == "applied", outcome.detail
    assert outcome.detail.endswith("; failing step passes again"), outcome.detail
    assert outcome.id == f"{verdict.error_id}:apply"
    # the intent was audited before the commit, naming the fix
    records = [json.loads(line) for line in
               (applier.settings.home / "audit.jsonl").read_text().splitlines()]
    (intent,) = [r for r in records
                 if r["kind"] == "apply.intent" and r["subject"] == verdict.error_id]
    assert intent["data"]["fix_id"] == "format.ruff_format"
    assert git(root, "rev-parse", "HEAD") == outcome.commit
    assert "Heal-Fix: format.ruff_format" in git(root, "log", "-1", "--format=%B")
    commits = git(root, "rev-list", "--count", "HEAD")
    # When the same verdict is delivered again, Then nothing is applied a second time
    again = applier.handle(verdict)
    assert again == outcome
    assert git(root, "rev-list", "--count", "HEAD") == commits
    row = attempt_store.apply_result(verdict.error_id)
    assert row is not None and row["status"] == "applied"


def test_still_failing_after_apply_is_reverted_without_rewriting_history(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    before = git(root, "rev-parse", "HEAD")
    # Given the failing step is flaky in the real tree (a file only the user has)
    (root / "shop/local_only.py").write_text("x=1\n")
    outcome = applier.handle(verdict)
    assert outcome.status == "rolled_back", outcome.detail
    assert "reverted by" in outcome.detail and "escalated" in outcome.detail
    log = git(root, "log", "--format=%s", f"{before}..HEAD").splitlines()
    assert len(log) == 2 and log[0].startswith("Revert heal fix")
    assert git(root, "merge-base", "--is-ancestor", before, "HEAD") == ""  # history kept
    from pipeline.guardrails.breaker import CircuitBreaker

    # Then the revert is counted by the breaker of the step and of its workflow
    status = CircuitBreaker(client, stage_settings).status()
    wf = verdict.error.workflow
    step_scope = f"step:{wf.id}/{wf.step}" if wf.id else f"step:{wf.step}"
    assert status["scopes"][step_scope]["reverts_in_window"] == 1, status
    assert status["scopes"]["global"]["reverts_in_window"] == 1, status


def test_suggestion_then_heal_apply(tmp_path: Path, validator: Validator, applier: Applier,
                                   attempt_store: AttemptStore) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX, mode="suggest")
    verdict = validator.validate(cand)
    outcome = applier.handle(verdict)
    assert outcome.status == "suggested"
    assert f"heal apply {cand.error_id}" in outcome.detail
    assert git(root, "branch", "--list", verdict.branch).strip()
    [row] = attempt_store.pending_suggestions(cand.error_id)
    assert row["id"] == cand.error_id
    applied = applier.apply_suggested(replace(verdict, decision="apply"))
    assert applied.status == "applied"
    assert attempt_store.pending_suggestions(cand.error_id) == []  # consumed


def test_dirty_tree_leaves_the_branch(tmp_path: Path, validator: Validator,
                                      applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    (root / "shop/discount.py").write_text("# my local edit\n")
    outcome = applier.handle(verdict)
    assert outcome.status == "suggested" and "uncommitted changes" in outcome.detail
    assert (root / "shop/discount.py").read_text() == "# my local edit\n"


def test_playbook_removes_a_stale_lock_and_the_step_passes(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_stale_lock(root)
    lock = root / ".git/index.lock"
    cand = candidate(root, ("git", "add", "notes.txt"), lock_fix(lock), mode="auto",
                     params={"lock_path": str(lock)})
    verdict = validator.validate(cand)
    assert verdict.decision == "suggest"  # MODERATE: not automatic until it graduates
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    assert outcome.status == "applied", outcome.detail
    assert not lock.exists()
    assert "notes.txt" in git(root, "diff", "--cached", "--name-only")


def test_playbook_fallback_then_escalation(tmp_path: Path, validator: Validator,
                                           applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_stale_lock(root)
    lock = root / ".git/index.lock"
    fix = lock_fix(lock)
    steps = fix["rendered"]["steps"]
    steps["primary"] = [{"name": "wrong tool", "argv": ["false"], "timeout_s": 5}]
    steps["fallback"] = [{"name": "remove via builtin", "action": "remove_stale_lock",
                          "args": {"path": ".git/index.lock", "min_age_s": 1}}]
    cand = candidate(root, ("git", "add", "notes.txt"), fix, params={"lock_path": str(lock)})
    outcome = applier.apply_suggested(replace(validator.validate(cand), decision="apply"))
    assert outcome.status == "applied" and "fallback" in outcome.detail

    # Given a fresh lock (a live git may hold it), When every step refuses, Then escalate
    lock.write_text("")
    os.utime(lock, (time.time(), time.time()))
    (root / "notes.txt").write_text("changed again\n")
    steps["primary"] = [{"name": "wrong tool", "argv": ["false"], "timeout_s": 5}]
    steps["fallback"] = [{"name": "remove via builtin", "action": "remove_stale_lock",
                          "args": {"path": ".git/index.lock", "min_age_s": 300}}]
    cand = candidate(root, ("git", "add", "notes.txt"), fix, params={"lock_path": str(lock)})
    outcome = applier.apply_suggested(replace(validator.validate(cand), decision="apply"))
    assert outcome.status == "escalated"
    assert "may be live" in outcome.detail
    assert lock.exists()


def test_step_timeout_is_enforced(tmp_path: Path, validator: Validator,
                                  applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_stale_lock(root)
    lock = root / ".git/index.lock"
    fix = lock_fix(lock)
    fix["rendered"]["steps"]["primary"] = [{"name": "hangs", "argv": ["sleep", "600"],
                                            "timeout_s": 0.5}]
    cand = candidate(root, ("git", "add", "notes.txt"), fix, params={"lock_path": str(lock)})
    started = time.monotonic()
    outcome = applier.apply_suggested(replace(validator.validate(cand), decision="apply"))
    # far below the 600 s the step would hang without its 0.5 s timeout, with room for a
    # loaded machine (validation and git run inside the measured span too)
    assert time.monotonic() - started < 120
    assert outcome.status == "escalated" and "timeout" in outcome.detail


def test_a_step_that_passes_on_a_plain_rerun_is_flaky_and_nothing_runs(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_stale_lock(root)
    lock = root / ".git/index.lock"
    marker = tmp_path / "failed-once"
    # Given a step that failed once and passes on any re-run
    command = ("sh", "-c", f"test -f {marker} && exit 0; touch {marker}; exit 1")
    cand = candidate(root, command, lock_fix(lock), params={"lock_path": str(lock)})
    # When the playbook is applied
    outcome = applier.apply_suggested(replace(validator.validate(cand), decision="apply"))
    # Then it is recorded as flaky and the playbook never ran (the lock is still there)
    assert outcome.status == "flaky", outcome.detail
    assert "plain re-run" in outcome.detail
    assert lock.exists()

