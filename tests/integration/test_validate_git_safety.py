"""Verification leaves what is not heal's alone: existing branches, the repository's hooks,
files outside the repository (real git repositories, real Redis and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

FORMAT_CHECK = ("ruff", "format", "--check", ".")


def test_an_existing_branch_named_like_heal_s_is_never_moved(
        tmp_path: Path, validator: Validator, client: redis.Redis,
        stage_settings: Settings) -> None:
    # Given a user's own branch named like heal's first attempt for this fingerprint
    root = sample_repo(tmp_path)
    break_formatting(root)
    fine = f"fp-branch-{tmp_path.name[-8:]}"
    git(root, "checkout", "-q", "-b", f"heal/{fine}-1")
    (root / "precious.txt").write_text("precious\n")
    git(root, "add", "precious.txt")
    git(root, "commit", "-q", "-m", "user's own precious commit")
    precious = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "main")
    # When a fix for that fingerprint is verified (and left as a suggestion)
    first = validator.validate(candidate(root, FORMAT_CHECK, FORMAT_FIX, mode="suggest",
                                         fine=fine))
    # Then heal took the next free number and the user's branch did not move
    assert first.decision == "suggest", first.reason
    assert first.branch == f"heal/{fine}-2"
    assert git(root, "rev-parse", f"heal/{fine}-1") == precious
    # And when the attempt counter restarts (a new HEAL_HOME, a deleted .heal) heal's own
    # suggestion branch is not moved either
    client.delete(stage_settings.key("validate", "attempts", fine))
    suggestion = git(root, "rev-parse", first.branch)
    second = validator.validate(candidate(root, FORMAT_CHECK, FORMAT_FIX, mode="auto-safe",
                                          fine=fine))
    assert second.decision == "apply", second.reason
    assert second.branch == f"heal/{fine}-3"
    assert git(root, "rev-parse", first.branch) == suggestion
    assert git(root, "rev-parse", f"heal/{fine}-1") == precious


def test_repository_hooks_do_not_run_in_heal_s_worktrees_nor_reach_the_fix_commit(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    # Given a repository whose post-checkout hook writes a file and whose prepare-commit-msg
    # hook (not skipped by --no-verify) fails
    root = sample_repo(tmp_path)
    break_formatting(root)
    hooks = root / ".git/hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "post-checkout").write_text('#!/bin/sh\necho "generated in $(pwd)" > '
                                         "hook-generated.txt\n")
    (hooks / "prepare-commit-msg").write_text("#!/bin/sh\nexit 1\n")
    for hook in hooks.glob("*"):
        hook.chmod(0o755)
    head = git(root, "rev-parse", "HEAD")
    # When the formatting fix is verified and applied
    verdict = validator.validate(candidate(root, FORMAT_CHECK, FORMAT_FIX))
    assert verdict.decision == "apply", verdict.reason
    outcome = applier.handle(verdict)
    assert outcome.status == "applied", outcome.detail
    # Then the fix commit on the user's branch holds only what the fix changed
    assert git(root, "show", "--name-only", "--format=", verdict.commit) == "shop/discount.py"
    assert git(root, "diff", "--name-only", head, "HEAD") == "shop/discount.py"
    assert not (root / "hook-generated.txt").exists()


def test_a_tracked_symlink_leading_outside_the_repository_is_never_written_through(
        tmp_path: Path, validator: Validator) -> None:
    # Given a file outside any repository, reachable through a link the repository tracks
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "ext.py"
    target.write_text("def ext(a,b):\n    return a-b\n")
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    root = sample_repo(tmp_path)
    break_formatting(root)
    (root / "shop/ext.py").symlink_to(target)
    git(root, "add", "shop/ext.py")
    git(root, "commit", "-q", "-m", "link")
    # When a fix that rewrites every Python file is verified, even in mode suggest
    verdict = validator.validate(candidate(root, FORMAT_CHECK, FORMAT_FIX, mode="suggest"))
    # Then the fix was not run: the file outside is byte for byte as it was, and why is said
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert verdict.decision == "reject"
    assert "symbolic links leading outside it (shop/ext.py -> " in verdict.reason
    assert str(target) in verdict.reason
    assert verdict.branch == "" and "heal/" not in git(root, "branch", "--list")
    assert git(root, "worktree", "list").count("\n") == 0


def test_a_fix_git_cannot_bring_onto_the_branch_says_git_s_reason(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    # Given a verified fix, a branch that moved on since, and a staged change in another file
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, FORMAT_CHECK, FORMAT_FIX))
    assert verdict.decision == "apply", verdict.reason
    (root / "notes.txt").write_text("v1\n")
    git(root, "commit", "-q", "-am", "notes")
    (root / "notes.txt").write_text("v1\nstaged\n")
    git(root, "add", "notes.txt")
    # When it is applied
    outcome = applier.handle(verdict)
    # Then the outcome keeps why git refused, not only its last line; and since only the
    # user's tree is in the way (nothing is wrong with the fix), the fix waits on its branch
    # for `heal apply` instead of being escalated
    assert outcome.status == "suggested", outcome.detail
    assert "your local changes would be overwritten by cherry-pick" in outcome.detail, \
        outcome.detail
    assert f"heal apply {verdict.error_id} once those files are moved" in outcome.detail
    assert "hint:" not in outcome.detail
    assert (root / "notes.txt").read_text() == "v1\nstaged\n"
    assert git(root, "diff", "--cached", "--name-only") == "notes.txt"
