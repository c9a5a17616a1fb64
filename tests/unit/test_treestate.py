"""pipeline.treestate: the working tree's digest heal run records with a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import treestate
from pipeline.treestate import tree_digest
from tests.integration._repos import git


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("one\n")
    (root / ".gitignore").write_text("build/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "i")
    return root


def test_the_digest_follows_content_of_tracked_and_untracked_files_not_ignored_ones(
        tmp_path: Path) -> None:
    root = _repo(tmp_path)
    clean = tree_digest(root)
    assert clean is not None and clean.startswith("ts1:") and tree_digest(root) == clean
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("x")
    assert tree_digest(root) == clean  # ignored: not part of it
    (root / "a.txt").write_text("two\n")
    edited = tree_digest(root)
    assert edited != clean
    (root / "a.txt").write_text("three\n")  # same status line, other content
    assert tree_digest(root) not in (clean, edited)
    (root / "a.txt").write_text("one\n")
    assert tree_digest(root) == clean
    (root / "new.txt").write_text("n\n")
    untracked = tree_digest(root)
    (root / "new.txt").write_text("m\n")
    assert tree_digest(root) not in (clean, untracked)


def test_renames_fifos_and_the_bounds_never_hang_or_fail(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    git(root, "mv", "a.txt", "b.txt")
    os.mkfifo(root / "pipe")  # never read: it would block
    monkeypatch.setattr(treestate, "MAX_BYTES", 2)
    first = tree_digest(root)
    assert first is not None and tree_digest(root) == first
    (root / "b.txt").write_text("a longer content\n")  # over the bound: size and time
    assert tree_digest(root) != first


def test_outside_a_git_repository_there_is_no_digest(tmp_path: Path) -> None:
    assert tree_digest(tmp_path) is None
