"""heal deletes a ``heal/`` branch only on positive evidence that its tip is the very commit
heal made (QA s19c, defect 4): with reflogs off (``core.logAllRefUpdates=false``) or expired,
a branch a person amended (heal's trailers survive ``git commit --amend``) was pruned and the
person's work went with it. Real git repositories with reflogs off, the real validate stage,
``heal branches prune`` in a subprocess."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.demo.sample import break_formatting, git
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.gitops import GitRepo, Trailers, run_git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo
from tests.integration.test_heal_branches import CHECK, heal_branches, heal_cli


def _no_reflogs(root: Path) -> None:
    git(root, "config", "core.logAllRefUpdates", "false")
    (root / "heal.toml").write_text("[limits]\ndedupe_minutes = 0\n")
    git(root, "add", "heal.toml")
    git(root, "commit", "-q", "-m", "heal policy")
    git(root, "reflog", "expire", "--expire=now", "--all")


def _keep_none(root: Path) -> None:
    (root / "heal.toml").write_text("[branches]\nkeep = 0\n\n[limits]\ndedupe_minutes = 0\n")


def test_amended_heal_branch_is_kept_with_reflogs_off(tmp_path: Path,
                                                      validator: Validator) -> None:
    root = sample_repo(tmp_path)
    _no_reflogs(root)
    break_formatting(root)
    made = [validator.validate(candidate(root, CHECK, FORMAT_FIX, mode="suggest")).branch
            for _ in range(2)]
    amended, untouched = made
    assert amended and untouched, made
    # a person amends heal's commit: their file joins it, heal's trailers stay
    git(root, "checkout", "-q", amended)
    (root / "mine.txt").write_text("my work\n")
    git(root, "add", "mine.txt")
    git(root, "commit", "-q", "--amend", "--no-edit")
    assert "Healed-by: heal" in git(root, "log", "-1", "--format=%B")
    git(root, "checkout", "-q", "main")
    assert git(root, "reflog", "show", f"refs/heads/{amended}", "--") == ""
    _keep_none(root)
    home = tmp_path / "cli-home"
    listed = heal_cli(root, home, "branches")
    assert listed.returncode == 0, listed.stderr
    assert "not the commit heal made" in listed.stdout, listed.stdout
    done = heal_cli(root, home, "branches", "prune")
    assert done.returncode == 0, done.stderr
    # Then heal's own untouched branch went, and the amended one stayed with the person's work
    assert heal_branches(root) == [amended], done.stdout
    assert git(root, "show", f"{amended}:mine.txt") == "my work"


@pytest.fixture
def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user.email anywhere, so heal commits as ``heal <heal@localhost>``."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)


def _branch_from_an_older_heal(tmp_path: Path, name: str) -> tuple[Path, GitRepo, str]:
    """A repository without reflogs or identity, and a heal branch as a heal before records
    left it (its record removed)."""
    root = tmp_path / name
    root.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@example.com",
           "GIT_COMMITTER_NAME": "p", "GIT_COMMITTER_EMAIL": "p@example.com"}
    for args in (("init", "-q", "-b", "main"), ("config", "core.logAllRefUpdates", "false")):
        run_git(args, root, env=env, check=True, capture_output=True)
    (root / "a.txt").write_text("a\n")
    run_git(("add", "a.txt"), root, env=env, check=True, capture_output=True)
    run_git(("commit", "-q", "-m", "init"), root, env=env, check=True, capture_output=True)
    repo = GitRepo(root)
    tree = tmp_path / f"{name}-tree"
    repo.add_worktree(tree, "HEAD")
    (tree / "fixed.txt").write_text("fixed\n")
    fp = f"{ALGORITHM_VERSION}:00112233aabbccdd"
    commit = repo.commit_all(tree, "heal: fix", "body", Trailers("heal", fp, "f"))
    repo.remove_worktree(tree)
    branch = repo.create_free_branch(fp, 1, commit)
    common = git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")
    assert (Path(common) / "heal" / "made" / commit).read_text().strip() == branch
    shutil.rmtree(Path(common) / "heal")
    return root, repo, branch


def test_unrecorded_branch_goes_only_when_heal_committed_it_and_nobody_since(
        tmp_path: Path, no_git_identity: None) -> None:
    _ = no_git_identity
    root, _repo, branch = _branch_from_an_older_heal(tmp_path, "old")
    assert "heal@localhost" in git(root, "log", "-1", "--format=%ce", branch)
    touched_root, _r, touched = _branch_from_an_older_heal(tmp_path, "touched")
    env = {**os.environ, "GIT_COMMITTER_NAME": "p", "GIT_COMMITTER_EMAIL": "p@example.com",
           "GIT_AUTHOR_NAME": "p", "GIT_AUTHOR_EMAIL": "p@example.com",
           "GIT_COMMITTER_DATE": "2030-01-01T00:00:00Z"}
    run_git(("checkout", "-q", touched), touched_root, env=env, check=True, capture_output=True)
    (touched_root / "mine.txt").write_text("mine\n")
    run_git(("add", "mine.txt"), touched_root, env=env, check=True, capture_output=True)
    run_git(("commit", "-q", "--amend", "--no-edit"), touched_root, env=env, check=True,
            capture_output=True)
    run_git(("checkout", "-q", "main"), touched_root, env=env, check=True, capture_output=True)
    for where in (root, touched_root):
        _keep_none(where)
        done = heal_cli(where, tmp_path / "cli-home", "branches", "prune")
        assert done.returncode == 0, done.stderr
    # Then heal's own unrecorded commit went; the re-committed one stayed
    assert heal_branches(root) == []
    assert heal_branches(touched_root) == [touched]
