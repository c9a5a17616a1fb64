"""heal's ``heal/`` branches do not pile up (QA s19b, defect 4: 62 after 30 healed runs).

The real validate and apply stages on the embedded engines, real git repositories: a fix's
branch goes once the fix is applied or rolled back; a suggestion's stays, bounded by the
``[branches]`` retention of heal.toml; branches a person made, edited, renamed or checked
out, or holding a person's commit found nowhere else, are never removed; ``heal branches``
(a subprocess) lists them and ``heal branches prune [--dry-run]`` prunes by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.apply.applier import Applier
from pipeline.branches import Retention, list_branches, plan
from pipeline.demo.sample import break_formatting, git
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.gitops import GitRepo, Trailers
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
CHECK = ("ruff", "format", "--check", ".")


def heal_branches(root: Path) -> list[str]:
    return git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads/heal/").split()


def heal_cli(root: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([*HEAL, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_applied_fix_leaves_no_heal_branch(tmp_path: Path, validator: Validator,
                                           applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, CHECK, FORMAT_FIX))
    assert verdict.decision == "apply" and verdict.branch in heal_branches(root), verdict.reason
    outcome = applier.handle(verdict)
    assert outcome.status == "applied", outcome.detail
    # Then the fix is on main and its verification branch is gone
    assert git(root, "rev-parse", "HEAD") == outcome.commit
    assert heal_branches(root) == []


def test_rolled_back_fix_leaves_no_heal_branch(tmp_path: Path, validator: Validator,
                                               applier: Applier) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, CHECK, FORMAT_FIX))
    (root / "shop/local_only.py").write_text("x=1\n")  # the step still fails in the real tree
    outcome = applier.handle(verdict)
    assert outcome.status == "rolled_back", outcome.detail
    assert heal_branches(root) == []


def test_suggestions_bounded_by_retention_and_people_branches_never_touched(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    (root / "heal.toml").write_text("[branches]\nkeep = 1\n\n[limits]\ndedupe_minutes = 0\n")
    git(root, "add", "heal.toml")
    git(root, "commit", "-q", "-m", "heal policy")
    break_formatting(root)

    def suggest() -> str:
        verdict = validator.validate(candidate(root, CHECK, FORMAT_FIX, mode="suggest"))
        assert verdict.decision == "suggest" and verdict.branch, verdict.reason
        return verdict.branch

    # a person's own branch in heal's namespace, with a commit of theirs
    git(root, "checkout", "-q", "-b", "heal/fp-v7-0123456789abcdef-1")
    (root / "mine.txt").write_text("mine\n")
    git(root, "add", "mine.txt")
    git(root, "commit", "-q", "-m", "my work")
    git(root, "checkout", "-q", "main")
    edited = suggest()  # a person then adds a commit to heal's branch
    git(root, "checkout", "-q", edited)
    (root / "note.txt").write_text("reviewed\n")
    git(root, "add", "note.txt")
    git(root, "commit", "-q", "-m", "review note")
    git(root, "checkout", "-q", "main")
    checked_out = suggest()
    git(root, "worktree", "add", "-q", str(tmp_path / "review"), checked_out)
    renamed = suggest()
    git(root, "branch", "-m", renamed, renamed.rsplit("-", 1)[0] + "-900")
    plain = suggest()
    newest = suggest()
    # Then the retention (keep = 1) removed heal's own older suggestion, and nothing else
    left = heal_branches(root)
    assert plain not in left and newest in left, left
    assert {"heal/fp-v7-0123456789abcdef-1", edited, checked_out,
            renamed.rsplit("-", 1)[0] + "-900"} <= set(left), left
    assert len(left) == 5, left
    # and the person's commits are all still on their branches
    assert git(root, "show", f"{edited}:note.txt") == "reviewed"


def test_heal_branches_command_lists_and_prunes(tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    (root / "heal.toml").write_text("[limits]\ndedupe_minutes = 0\n")
    git(root, "add", "heal.toml")
    git(root, "commit", "-q", "-m", "heal policy")
    break_formatting(root)
    made = [validator.validate(candidate(root, CHECK, FORMAT_FIX, mode="suggest")).branch
            for _ in range(2)]
    assert sorted(heal_branches(root)) == sorted(made)
    home = tmp_path / "cli-home"
    listed = heal_cli(root, home, "branches")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in made), listed.stdout
    assert "retention: the newest 20, none older than 14 days" in listed.stdout
    # keep = 0: every heal branch may go; --dry-run only says so
    (root / "heal.toml").write_text("[branches]\nkeep = 0\n\n[limits]\ndedupe_minutes = 0\n")
    dry = heal_cli(root, home, "branches", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 2 heal branch(es)" in dry.stdout, dry.stdout
    assert sorted(heal_branches(root)) == sorted(made)
    done = heal_cli(root, home, "branches", "prune")
    assert done.returncode == 0, done.stderr
    assert "removed 2 heal branch(es)" in done.stdout, done.stdout
    assert heal_branches(root) == []
    bad = heal_cli(root, home, "branches", "--repo", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "no such path" in bad.stderr, bad.stderr


def test_branch_holding_a_commit_found_nowhere_else_is_never_pruned(tmp_path: Path) -> None:
    """A person's commit heal verified a fix on, then dropped from main (reset): only heal's
    branch still holds it, so the branch stays whatever the retention says."""
    root = sample_repo(tmp_path)
    (root / "wip.txt").write_text("work in progress\n")
    git(root, "add", "wip.txt")
    git(root, "commit", "-q", "-m", "wip")
    repo = GitRepo(root)
    tree = tmp_path / "tree"
    repo.add_worktree(tree, "HEAD")
    (tree / "fixed.txt").write_text("fixed\n")
    fp = f"{ALGORITHM_VERSION}:00112233aabbccdd"
    commit = repo.commit_all(tree, "heal: fix", "body", Trailers("heal", fp, "f"))
    repo.remove_worktree(tree)
    name = repo.create_free_branch(fp, 1, commit)
    git(root, "reset", "-q", "--hard", "HEAD~1")
    [branch] = list_branches(repo)
    assert branch.name == name and "1 commit(s)" in branch.kept_because, branch
    assert plan([branch], Retention(keep=0, max_age_days=0.000001), now=1e12) == []


def test_heal_apply_of_a_suggestion_whose_commit_git_pruned_says_what_to_do(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    """The retention removed a suggestion's branch and git's gc pruned its commit: `heal apply`
    says so and what to do (no git error, no traceback), and changes nothing."""
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, CHECK, FORMAT_FIX, mode="suggest"))
    assert verdict.decision == "suggest" and verdict.branch, verdict.reason
    head = git(root, "rev-parse", "HEAD")
    git(root, "branch", "-D", verdict.branch)
    git(root, "reflog", "expire", "--expire=now", "--all")
    git(root, "gc", "-q", "--prune=now")
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    assert outcome.status == "escalated", outcome.detail
    assert "no longer in the repository" in outcome.detail, outcome.detail
    assert "run the failing step again" in outcome.detail, outcome.detail
    assert git(root, "rev-parse", "HEAD") == head


def test_a_fix_that_fails_verification_leaves_no_branch_and_no_record(
        tmp_path: Path, validator: Validator) -> None:
    """The branch of a fix that did not survive its checks goes at once, and so does heal's
    record of the commit it made (``<git-common-dir>/heal/made/``): records do not pile up."""
    root = sample_repo(tmp_path)
    break_formatting(root)
    touch = {**FORMAT_FIX, "id": "touch.file", "pattern_id": "touch.file",
             "title": "Touch a file", "rendered": {"argv": ["touch", "touched.txt"],
                                                   "timeout_s": 60}}
    verdict = validator.validate(candidate(root, CHECK, touch))
    assert verdict.decision != "apply", verdict.reason
    assert heal_branches(root) == []
    made = Path(git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "heal/made"
    assert not made.exists() or list(made.iterdir()) == []
