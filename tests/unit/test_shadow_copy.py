"""The repository copy shadow mode verifies in: tracked files as they are now (edits
included), history and branches, nothing untracked; the original is never touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.shadow import Sandbox


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = 1\n")
    (root / "gone.py").write_text("y = 2\n")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    (root / "a.py").write_text("x = 2\n")  # an uncommitted edit
    (root / "gone.py").unlink()  # a deleted tracked file
    (root / ".venv/lib").mkdir(parents=True)
    (root / ".venv/lib/big.bin").write_bytes(b"\0" * 1024)
    (root / "scratch.txt").write_text("untracked\n")
    return root


def test_copy_has_tracked_state_and_history_but_nothing_untracked(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    box = Sandbox(Settings.from_env())
    try:
        copy = box.copy_repo(repo)
        assert box.copy_repo(repo) == copy  # once per repository
        assert (copy / "a.py").read_text() == "x = 2\n"
        assert not (copy / "gone.py").exists()
        assert not (copy / ".venv").exists() and not (copy / "scratch.txt").exists()
        assert _git(copy, "status", "--porcelain").split("\n")[:2] == [" M a.py", " D gone.py"]
        assert _git(copy, "log", "--format=%s") == "init\n"
        assert _git(copy, "stash", "create").strip()  # verification's snapshot works
        _git(copy, "branch", "heal/x-1")
    finally:
        box.close_files()
    assert "heal/x-1" not in _git(repo, "branch")
    assert not box.tmp.exists()
