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
