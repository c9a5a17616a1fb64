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


def test_the_digest_follows_content_of_tracked_and_untracked_files(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("x")
    clean = tree_digest(root)
    assert clean is not None and clean.startswith("ts3:") and tree_digest(root) == clean
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


def test_files_git_ignores_are_a_part_of_their_own_and_heal_s_state_is_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    (root / ".gitignore").write_text("build/\n.heal/\n.heal.pg/\n")
    git(root, "commit", "-qam", "ignore heal")
    home = root / ".heal"
    home.mkdir()
    (root / "build" / "pkg").mkdir(parents=True)
    (root / "build" / "pkg" / "a.py").write_text("x = 1\n")
    seen = tree_digest(root, home)
    assert seen is not None
    (home / "state.db").write_text("written by heal")  # heal's own: not a change
    (root / ".heal.pg").mkdir()
    assert treestate.compare(seen, tree_digest(root, home)) == treestate.SAME
    (root / "build" / "pkg" / "a.py").write_text("x = 2\n")  # a file edited in place
    edited = tree_digest(root, home)
    assert treestate.compare(seen, edited) == treestate.IGNORED
    (root / "build" / "pkg" / "a.py").write_text("x = 1\n")
    (root / "build" / "other").mkdir()  # a package installed
    assert treestate.compare(seen, tree_digest(root, home)) == treestate.IGNORED
    (root / "a.txt").write_text("two\n")  # a tracked change is said first
    assert treestate.compare(seen, tree_digest(root, home)) == treestate.TRACKED
    # git cannot say now, or the ignored files took too long: unknown, never "the same"
    assert treestate.compare(seen, None) == treestate.UNKNOWN
    git(root, "checkout", "-q", "a.txt")
    monkeypatch.setattr(treestate, "IGNORED_TIME_S", -1.0)
    slow = tree_digest(root, home)
    assert slow is not None and slow.endswith(".unknown")
    assert treestate.compare(seen, slow) == treestate.UNKNOWN
    # an event of an older heal (``ts1:``, no ignored part): the tracked part alone
    monkeypatch.setattr(treestate, "IGNORED_TIME_S", 5.0)
    old = "ts1:" + seen[4:].partition(".")[0]
    assert treestate.compare(old, tree_digest(root, home)) == treestate.SAME


def test_the_walk_of_ignored_files_is_bounded_and_counts_entries_past_the_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    (root / "build").mkdir()
    for n in range(50):
        (root / "build" / f"f{n:02}").write_text(str(n))
    monkeypatch.setattr(treestate, "MAX_IGNORED_ENTRIES", 5)
    seen = tree_digest(root)
    assert seen is not None and tree_digest(root) == seen
    (root / "build" / "f49").write_text("changed past the bound")  # not read: the same
    assert tree_digest(root) == seen
    (root / "build" / "zz").write_text("added")  # one more entry: counted
    assert treestate.compare(seen, tree_digest(root)) == treestate.IGNORED


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


def test_ignored_files_count_by_size_and_time_never_by_their_bytes(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    (root / ".gitignore").write_text("build/\n.env\n")
    git(root, "commit", "-qam", "ignore .env")
    secret = root / ".env"
    secret.write_text("PASSWORD=aaaa\n")
    when = secret.stat().st_mtime_ns
    seen = tree_digest(root)
    secret.write_text("PASSWORD=bbbb\n")  # same size and time: the digest cannot tell
    os.utime(secret, ns=(when, when))
    assert tree_digest(root) == seen
    secret.write_text("PASSWORD=bbbbb\n")  # an edit that changes its size or time is seen
    assert treestate.compare(seen, tree_digest(root)) == treestate.IGNORED


def test_every_loop_of_the_ignored_walk_looks_at_the_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    (root / ".gitignore").write_text("*.o\n")
    git(root, "commit", "-qam", "objects")
    for i in range(3):  # ignored files listed one by one (no ignored folder)
        (root / f"x{i}.o").write_bytes(os.urandom(1024))
    assert not str(tree_digest(root)).endswith(".unknown")
    monkeypatch.setattr(treestate, "IGNORED_TIME_S", -1.0)
    digest = tree_digest(root)
    assert digest is not None and digest.endswith(".unknown")
    # a folder of many entries: the clock is read while it is listed
    monkeypatch.setattr(treestate, "IGNORED_TIME_S", 5.0)
    (root / ".gitignore").write_text("big/\n")
    git(root, "commit", "-qam", "big")
    (root / "big").mkdir()
    for i in range(1000):
        (root / "big" / f"f{i}").write_text("")
    calls = [0]

    def clock() -> float:  # the deadline, the seed, the folder's turn; then time is up
        calls[0] += 1
        return 0.0 if calls[0] <= 3 else 100.0

    monkeypatch.setattr(treestate.time, "monotonic", clock)
    assert str(tree_digest(root)).endswith(".unknown")



def test_an_older_scheme_s_ignored_part_is_not_compared(tmp_path: Path) -> None:
    now = tree_digest(_repo(tmp_path))
    assert now is not None
    tracked, _, ignored = now[len("ts3:"):].partition(".")
    assert treestate.compare(f"ts2:{tracked}.{ignored}", now) == treestate.UNKNOWN
    assert treestate.compare(f"ts2:{'0' * 64}.{ignored}", now) == treestate.TRACKED
    assert treestate.compare(f"ts1:{tracked}", now) == treestate.SAME
