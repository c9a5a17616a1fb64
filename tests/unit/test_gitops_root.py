"""find_root: the git command's answer (fast path) agrees with GitPython's, also inside a
hook (GIT_DIR set), and a folder outside any repository is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.errors import GitError
from pipeline.gitops import find_root


def test_root_of_a_subfolder_even_with_git_dir_set(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "a" / "b").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert find_root(repo / "a" / "b") == repo.resolve()
    # a git hook runs with GIT_DIR set (relative); the root is still found from the path
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GIT_DIR", ".git")
    assert find_root(repo / "a" / "b") == repo.resolve()


def test_a_folder_outside_any_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not inside a git repository"):
        find_root(tmp_path)
