"""Verification outcomes in a real git worktree, one by one (issue 16: mutation score of
pipeline/validate): deferred fixes, a fix that does not realize, a realized change that breaks
the rules a diff obeys, the checks run before and after, the branch kept or discarded.

The checks' runner is a recording stand-in here (the RQ path is proven in
test_validate_verify.py and test_mut_validate_rqjobs.py): what matters is which checks the
verifier asks for and what it concludes from their results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import GitError
from pipeline.events import CandidateEvent, ErrorEvent, Repo
from pipeline.policy import Check, Policy
from pipeline.validate.request import FixRequest
from pipeline.validate.rqjobs import CheckSpec
from pipeline.validate.verify import REALIZE_TIMEOUT_S, Verifier


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("one\n")
    (root / "sub" / "b.txt").write_text("two\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


class Checks:
    """Records the specs; answers with exit codes from ``codes[(phase, name)]`` (default 0)."""

    def __init__(self, codes: dict[tuple[str, str], int] | None = None) -> None:
        self.codes = codes or {}
        self.specs: list[CheckSpec] = []

    def run(self, specs: list[CheckSpec]) -> list[dict[str, Any]]:
        self.specs = list(specs)
        return [{"name": s.name, "phase": s.phase, "argv": list(s.argv),
                 "exit_code": self.codes.get((s.phase, s.name), 0), "duration_s": 0.1}
                for s in specs]


def request(root: Path, fix: dict[str, Any], policy: Policy | None = None,
            trusted: tuple[str, ...] = ("make", "lint"), command: tuple[str, ...] = ("make",),
            cwd: str = "") -> FixRequest:
    err = ErrorEvent(id="e1", text="boom", command=command,
                     repo=Repo(path=str(root), commit="c1"),
                     tags={"cwd": cwd} if cwd else {})
    cand = CandidateEvent(id="e1:lookup", error_id="e1", error=err, fine="fp/one", fix=fix)
    return FixRequest(cand, fix, root, policy or Policy(), trusted_command=trusted)


def py(code: str, **extra: Any) -> dict[str, Any]:
    return {"id": "fx", "kind": "command", "category": "SAFE", "title": "Fix it",
            "rendered": {"argv": [sys.executable, "-c", code], **extra}}


def verifier(tmp_path: Path, checks: Checks) -> Verifier:
    return Verifier(checks, tmp_path / "worktrees")  # type: ignore[arg-type]


def test_deferred_fixes(repo: Path, tmp_path: Path) -> None:
    checks = Checks()
    v = verifier(tmp_path, checks)
    book = v.verify(request(repo, {"id": "p", "kind": "playbook", "category": "SAFE"}), 1)
    assert (book.passed, book.deferred) == (True, True)
    assert book.reason == ("playbook: verified step by step when applied (validation after "
                           "each action)")
    install = v.verify(request(repo, {**py("pass"), "category": "MODERATE"}), 1)
    assert (install.passed, install.deferred) == (True, True)
    assert install.reason == ("MODERATE command: runs only when applied, then the failing "
                              "step is re-run")
    assert checks.specs == [] and git(repo, "branch", "--list", "heal/*") == ""


def test_a_verified_fix_gets_its_branch_and_its_evidence(repo: Path, tmp_path: Path) -> None:
    checks = Checks({("before", "failing-command"): 2})
    pol = Policy(checks=(Check("lint", ("ruff", "check"), 33.0),), check_timeout_s=44.0)
    req = request(repo, py("open('b.txt','a').write('x\\ny\\n')"), pol, cwd=str(repo / "sub"))
    head = git(repo, "rev-parse", "HEAD")
    ver = verifier(tmp_path, checks).verify(req, 3)
    assert ver.passed and not ver.deferred
    assert ver.reason == "original failure gone; no check regressed"
    assert ver.branch == "heal/fp-one-3" and ver.changed == ["sub/b.txt"] and ver.lines == 2
    assert git(repo, "rev-parse", ver.branch) == ver.commit
    message = git(repo, "log", "-1", "--format=%B", ver.branch)
    assert message.startswith("heal: Fix it\n\nAutomated fix for error e1 (make).")
    assert "Heal-Fix: fx" in message and "Heal-Fingerprint: fp/one" in message
    # the failing command (from the event's directory) and every check, before and after
    specs = [(s.name, s.phase, s.argv, s.timeout_s) for s in checks.specs]
    assert specs == [("failing-command", "before", ("make", "lint"), 44.0),
                     ("lint", "before", ("ruff", "check"), 33.0),
                     ("failing-command", "after", ("make", "lint"), 44.0),
                     ("lint", "after", ("ruff", "check"), 33.0)]
    before, after = checks.specs[0].cwd, checks.specs[2].cwd
    assert before.endswith("-before/sub") and after.endswith("-after/sub")
    assert checks.specs[1].cwd == before.removesuffix("/sub")
    assert checks.specs[3].cwd == after.removesuffix("/sub")
    assert [r["name"] for r in ver.runs] == ["failing-command", "lint"] * 2
    # the user's tree untouched, the worktrees gone
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert not Path(after).exists() and not Path(before).exists()
    assert git(repo, "worktree", "list").count("\n") == 0


def test_without_include_failing_only_the_checks_run(repo: Path, tmp_path: Path) -> None:
    checks = Checks()
    pol = Policy(include_failing=False, checks=(Check("lint", ("ruff",), 5.0),))
    verifier(tmp_path, checks).verify(request(repo, py("open('a.txt','w').write('z')"), pol), 1)
    assert [(s.name, s.phase) for s in checks.specs] == [("lint", "before"), ("lint", "after")]


def test_a_fix_that_does_not_pass_loses_its_branch(repo: Path, tmp_path: Path) -> None:
    checks = Checks({("before", "failing-command"): 1, ("after", "failing-command"): 1})
    ver = verifier(tmp_path, checks).verify(request(repo, py("open('a.txt','w').write('z')")), 1)
    assert not ver.passed and ver.branch == "" and ver.commit
    assert ver.reason == "the failing command still fails with the fix (exit 1)"
    assert git(repo, "branch", "--list", "heal/*") == ""


def test_nothing_to_run_says_why(repo: Path, tmp_path: Path) -> None:
    untrusted = request(repo, py("open('a.txt','w').write('z')"), trusted=())
    ver = verifier(tmp_path, Checks()).verify(untrusted, 1)
    assert not ver.passed and ver.reason.startswith(
        "nothing to run: the event's command is not trusted (not from heal run here, not in "
        "[trust] commands) and operator configuration declares no [[verify.checks]]")
    no_command = request(repo, py("open('a.txt','w').write('z')"), trusted=(), command=())
    ver = verifier(tmp_path, Checks()).verify(no_command, 2)
    assert ver.reason == "nothing to run: the error has no command and heal.toml has no checks"


def test_a_fix_that_does_not_realize(repo: Path, tmp_path: Path) -> None:
    v = verifier(tmp_path, Checks())
    failed = v.verify(request(repo, py("import sys; sys.exit(3)")), 1)
    assert not failed.passed and failed.reason == "the fix command exited 3 and changed nothing"
    [run] = failed.runs
    assert (run["name"], run["phase"], run["exit_code"]) == ("fix", "realize", 3)
    nothing = v.verify(request(repo, py("pass")), 1)
    assert nothing.reason == "the fix changed nothing in the worktree" and not nothing.passed
    # a non-zero exit that did change files goes on to be checked
    partial = verifier(tmp_path, Checks({("before", "failing-command"): 1})).verify(
        request(repo, py("open('a.txt','w').write('z'); raise SystemExit(1)")), 1)
    assert partial.passed, partial.reason


def test_the_fix_runs_in_the_worktree_from_the_events_directory(repo: Path,
                                                               tmp_path: Path) -> None:
    fix = py("import os; open('here.txt','w').write(os.getcwd())")
    ver = verifier(tmp_path, Checks({("before", "failing-command"): 1})).verify(
        request(repo, fix, cwd=str(repo / "sub")), 1)
    assert ver.changed == ["sub/here.txt"]
    written = git(repo, "show", f"{ver.branch}:sub/here.txt")
    assert written.endswith("-after/sub") and str(repo) not in written


def test_the_fix_command_has_a_timeout(repo: Path, tmp_path: Path) -> None:
    assert REALIZE_TIMEOUT_S == 120.0
    slow = py("import time; time.sleep(30)", timeout_s=0.5)
    ver = verifier(tmp_path, Checks()).verify(request(repo, slow), 1)
    assert not ver.passed and ver.reason == "the fix command exited 124 and changed nothing"


def test_a_taught_command_that_changes_nothing_is_deferred(repo: Path, tmp_path: Path) -> None:
    # (taught in this repository: it may run in a worktree to be verified)
    taught = {**py("pass", verify_in_worktree=True, taught_in=str(repo)), "category": "MODERATE"}
    ver = verifier(tmp_path, Checks()).verify(request(repo, taught), 1)
    assert ver.passed and ver.deferred
    assert ver.reason.startswith("taught command ran in a worktree to verify it and changed "
                                 "no file there"), ver.reason
    # taught elsewhere (or nowhere recorded) and matched by no exact match: never run here
    held = verifier(tmp_path, Checks()).verify(
        request(repo, {**py("open('b.txt','w').write('z')", verify_in_worktree=True),
                       "category": "MODERATE"}), 1)
    assert held.passed and held.deferred and held.changed == []
    assert "taught in a repository heal did not record and matches here by no exact match" \
        in held.reason, held.reason
    changing = {**py("open('a.txt','w').write('z')", verify_in_worktree=True,
                     taught_in=str(repo)), "category": "MODERATE"}
    checks = Checks({("before", "failing-command"): 1})
    ver = verifier(tmp_path, checks).verify(request(repo, changing), 1)
    assert ver.passed and not ver.deferred and ver.changed == ["a.txt"]


def test_diffs(repo: Path, tmp_path: Path) -> None:
    good = ("diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+uno\n")
    fix = {"id": "d", "kind": "diff", "category": "SAFE", "rendered": {"diff": good}}
    checks = Checks({("before", "failing-command"): 1})
    ver = verifier(tmp_path, checks).verify(request(repo, fix), 1)
    assert ver.passed and ver.changed == ["a.txt"] and ver.lines == 2
    assert git(repo, "show", f"{ver.branch}:a.txt") == "uno"
    bad = {**fix, "rendered": {"diff": good.replace("-one", "-eins")}}
    ver = verifier(tmp_path, Checks()).verify(request(repo, bad), 1)
    assert not ver.passed and ver.reason.startswith("the diff does not apply in the worktree: ")
    zero = ("diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,0 +2 @@\n+added\n")
    ok = {**fix, "rendered": {"diff": zero, "unidiff_zero": True}}
    assert verifier(tmp_path, Checks({("before", "failing-command"): 1})).verify(
        request(repo, ok), 1).passed
    plain = {**fix, "rendered": {"diff": zero}}
    assert "does not apply" in verifier(tmp_path, Checks()).verify(request(repo, plain),
                                                                    1).reason


def test_the_realized_change_obeys_the_rules_of_a_diff(repo: Path, tmp_path: Path) -> None:
    v = verifier(tmp_path, Checks())
    protected = v.verify(request(repo, py("open('sub/b.txt','w').write('z')"),
                                 Policy(protected=("sub/**",))), 1)
    assert protected.reason == ("realized change refused: path 'sub/b.txt' is protected by "
                                "policy glob 'sub/**'")
    big = v.verify(request(repo, py("open('a.txt','w').write('1\\n2\\n3\\n')"),
                           Policy(max_diff_lines=3)), 1)
    assert big.reason == ("realized change is 4 lines in 1 files; limits are 3 lines, "
                          "20 files")
    at_limit = v.verify(request(repo, py("open('a.txt','w').write('1\\n2\\n')"),
                                Policy(max_diff_lines=3)), 1)
    assert "realized change is" not in at_limit.reason
    files = v.verify(request(repo, py("open('a.txt','w').write('z'); "
                                      "open('sub/b.txt','w').write('z')"),
                             Policy(max_files=1)), 1)
    assert files.reason == ("realized change is 4 lines in 2 files; limits are 400 lines, "
                            "1 files")
    secret = v.verify(request(repo, py("open('a.txt','w').write('k = AKIAABCDEFGHIJKLMNOP\\n')")),
                      1)
    assert secret.reason == "realized change adds a secret: aws_access_key"
    assert not any(r.passed for r in (protected, big, files, secret))


def test_a_broken_repository_raises_git_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError):
        verifier(tmp_path, Checks()).verify(request(tmp_path / "plain", py("pass")), 1)
