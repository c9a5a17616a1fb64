"""A verified fix that no longer applies (the branch moved on the same lines): heal says which
files conflict and that nothing was changed, not git's hints about a cherry-pick it aborted
(real git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.errors import GitError
from pipeline.gitops import GitRepo


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_a_conflicting_fix_names_the_files_and_leaves_the_tree_clean(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = [1,2,\n  3]\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    _git(root, "checkout", "-qb", "heal/fix")
    (root / "a.py").write_text("x = [1, 2, 3]\n")
    _git(root, "commit", "-qam", "the fix")
    fix = _git(root, "rev-parse", "HEAD")
    _git(root, "checkout", "-q", "main")
    (root / "a.py").write_text("x = [1,2,\n  3, 4]\n")
    _git(root, "commit", "-qam", "moved on")
    with pytest.raises(GitError) as info:
        GitRepo(root).bring_onto_current(fix)
    message = str(info.value)
    assert "conflicts with changes made since it was verified (a.py)" in message
    assert "nothing was changed" in message and "hint:" not in message
    assert _git(root, "status", "--porcelain") == ""  # no cherry-pick left in progress
    assert not (root / ".git" / "CHERRY_PICK_HEAD").exists()


def test_a_fix_already_on_the_branch_is_already_applied_and_changes_nothing(
        tmp_path: Path) -> None:
    """The fix's change was committed by hand after verification: the cherry-pick would be
    empty. heal says so (AlreadyApplied) instead of passing on git's advice to continue a
    cherry-pick it aborted."""
    from pipeline.gitops import AlreadyApplied

    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = [1,2]\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    _git(root, "checkout", "-qb", "heal/fix")
    (root / "a.py").write_text("x = [1, 2]\n")
    _git(root, "commit", "-qam", "the fix")
    fix = _git(root, "rev-parse", "HEAD")
    _git(root, "checkout", "-q", "main")
    (root / "b.py").write_text("y = 1\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "moved on")
    (root / "a.py").write_text("x = [1, 2]\n")
    _git(root, "commit", "-qam", "the same fix, by hand")
    head = _git(root, "rev-parse", "HEAD")
    with pytest.raises(AlreadyApplied) as info:
        GitRepo(root).bring_onto_current(fix)
    assert str(info.value).startswith(f"already applied: nothing to do: the change of {fix[:10]}")
    assert _git(root, "rev-parse", "HEAD") == head
    assert not (root / ".git" / "CHERRY_PICK_HEAD").exists()


def test_git_failures_keep_the_reason_and_drop_gits_advice_lines(tmp_path: Path) -> None:
    """`git commit` with nothing staged prints status advice on lines of their own
    (`(use "git add <file>..." to include ...)`): the GitError keeps the reason only."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = 1\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    (root / "new.py").write_text("y = 1\n")
    with pytest.raises(GitError) as info:
        GitRepo(root).run("commit", "-m", "nothing staged")
    message = str(info.value)
    assert "nothing added to commit but untracked files present" in message, message
    assert '(use "git add <file>..."' not in message, message
