"""The validate stage's parts, pinned by what they return (issue 16: mutation score of
pipeline/validate): what a fix request is made of, secrets and diff sizes, the argv runner
and its watchdog, verification outcomes, hostile paths and the RQ helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.events import CandidateEvent, ErrorEvent, Repo
from pipeline.policy import Policy
from pipeline.validate.paths import diff_paths, fix_escape, param_paths, path_problem
from pipeline.validate.request import FixRequest
from pipeline.validate.rqjobs import CheckSpec, redis_url_of, worker_argv
from pipeline.validate.runner import is_shell_string, run_argv, shell_with_error_text, tail
from pipeline.validate.secrets import added_lines, diff_size, find_secrets
from pipeline.validate.verify import failure_reproduced, judge_runs, rel_cwd


def request(fix: dict[str, Any], fine: str = "fine1", coarse: str = "coarse1",
            commit: str = "c1", root: Path = Path("/r")) -> FixRequest:
    err = ErrorEvent(id="e1", text="boom", repo=Repo(path=str(root), commit=commit))
    cand = CandidateEvent(id="e1:lookup", error_id="e1", error=err, fix=fix, fine=fine,
                          coarse=coarse)
    return FixRequest(cand, fix, root, Policy())


# -- the request -----------------------------------------------------------------------------

def test_request_fields_and_defaults() -> None:
    req = request({"id": 7, "kind": "diff", "category": "moderate", "rendered": {"diff": "x"}})
    assert (req.fix_id, req.kind, req.category, req.rendered) == ("7", "diff", "MODERATE",
                                                                  {"diff": "x"})
    bare = request({})
    assert (bare.fix_id, bare.kind, bare.category, bare.rendered) == ("", "", "RISKY", {})
    assert request({"rendered": ["not", "a", "dict"]}).rendered == {}
    assert request({}, fine="f").fingerprint == "f"
    assert request({}, fine="", coarse="c").fingerprint == "c"
    assert request({}, fine="", coarse="").fingerprint == "e1"


def test_request_key_is_one_per_situation() -> None:
    fix = {"id": "f", "rendered": {"argv": ["chmod", "+x", "a.sh"]}}
    key = request(fix).request_key
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    assert request(dict(fix)).request_key == key  # the same request again
    other_file = {"id": "f", "rendered": {"argv": ["chmod", "+x", "b.sh"]}}
    differs = [request(other_file), request(fix, commit="c2"), request(fix, fine="fine2"),
               request({**fix, "id": "g"}), request(fix, root=Path("/other"))]
    assert key not in {r.request_key for r in differs}
    # the rendered fix is compared by content: key order does not matter, any value hashes
    a = request({"id": "f", "rendered": {"argv": ["x"], "timeout_s": 5, "at": Path("/p")}})
    b = request({"id": "f", "rendered": {"at": Path("/p"), "timeout_s": 5, "argv": ["x"]}})
    assert a.request_key == b.request_key
    assert len({r.request_key for r in differs}) == len(differs)


def test_step_argvs_and_action_paths() -> None:
    command = request({"kind": "command", "rendered": {"argv": ["ruff", "format", "."]}})
    assert command.step_argvs() == [["ruff", "format", "."]]
    assert request({"kind": "command", "rendered": {}}).step_argvs() == [[]]
    assert command.action_paths() == []
    playbook = request({"kind": "playbook", "rendered": {"steps": {
        "check": [{"argv": ["git", "status"]}, {"action": "noop"}, "junk"],
        "act": [{"argv": None}, {"action": "remove", "args": {"path": ".git/index.lock"}},
                {"action": "x", "args": {"path": 3}}, {"action": "y", "args": "p"}],
        "validate": None}}})
    assert playbook.step_argvs() == [["git", "status"], []]
    assert playbook.action_paths() == [".git/index.lock"]
    assert request({"kind": "playbook", "rendered": {"steps": ["x"]}}).step_argvs() == []
    assert request({"kind": "playbook", "rendered": {"steps": ["x"]}}).action_paths() == []


# -- secrets and sizes -----------------------------------------------------------------------

@pytest.mark.parametrize(("line", "name"), [
    ("-----BEGIN PRIVATE KEY-----", "private_key"),
    ("-----BEGIN EC PRIVATE KEY-----", "private_key"),
    ("id = AKIAABCDEFGHIJKLMNOP", "aws_access_key"),
    ("id = ASIAABCDEFGHIJKLMNOP", "aws_access_key"),
    ("t = ghp_" + "a" * 36, "github_token"),
    ("t = github_pat_" + "a" * 40, "github_token"),
    ("k = sk-" + "a" * 20, "api_token"),
    ("k = xoxb-" + "a" * 10, "api_token"),
    ("TOKEN: 'abcdef'", "password_literal"),
    ("api_key = \"abcdefgh\"", "password_literal"),
])
def test_each_secret_pattern_is_found_on_added_lines_only(line: str, name: str) -> None:
    assert find_secrets(f"+++ b/x\n+{line}\n") == [name]
    assert find_secrets(f"--- a/x\n-{line}\n {line}\n") == []


@pytest.mark.parametrize("line", ["id = AKIAABCDEFGHIJKLMNO", "t = ghp_" + "a" * 35,
                                  "k = sk-" + "a" * 19, "password = 'short'",
                                  "password = os.environ['X']", "-----BEGIN PUBLIC KEY-----"])
def test_what_is_not_a_secret(line: str) -> None:
    assert find_secrets(f"+{line}\n") == []


def test_secret_names_once_each_in_order() -> None:
    diff = ("+a = AKIAABCDEFGHIJKLMNOP\n+-----BEGIN RSA PRIVATE KEY-----\n"
            "+b = AKIAZZZZZZZZZZZZZZZZ\n")
    assert find_secrets(diff) == ["aws_access_key", "private_key"]
    assert added_lines("+++ b/x\n+one\n-two\n three\n+\n") == ["one", ""]


def test_diff_size() -> None:
    diff = ("diff --git a/x b/x\n--- a/x\n+++ b/x\n+a\n-b\n c\n"
            "diff --git a/y b/y\n--- a/y\n+++ b/y\n+d\n")
    assert diff_size(diff) == (3, 2)
    assert diff_size("--- a/x\n+++ b/x\n+a\n+b\n") == (2, 1)  # no headers: one file
    assert diff_size("--- a/x\n+++ b/x\n context\n") == (0, 0)
    assert diff_size("") == (0, 0)


# -- the runner ------------------------------------------------------------------------------

def test_tail_keeps_the_end_and_redacts() -> None:
    assert tail("short") == "short"
    assert tail("x" * 2000) == "x" * 2000
    assert tail("a" + "x" * 2000) == "…" + "x" * 2000
    assert tail("abcdef", 3) == "…def"
    assert "AKIAABCDEFGHIJKLMNOP" not in tail("key AKIAABCDEFGHIJKLMNOP leaked")


@pytest.mark.parametrize(("argv", "shell"), [
    (["sh", "-c", "x"], True), (["/bin/bash", "-c", "x"], True), (["cmd", "/c", "x"], True),
    (["pwsh", "-Command", "x"], True), (["sh", "script.sh"], False), (["python", "-c", "x"], False),
    ([], False), (["sh"], False),
])
def test_is_shell_string(argv: list[str], shell: bool) -> None:
    assert is_shell_string(argv) is shell


def test_shell_with_error_text_needs_a_non_empty_string_parameter() -> None:
    assert shell_with_error_text(["sh", "-c", "rm x"], {"f": "x"})
    assert not shell_with_error_text(["sh", "-c", "rm x"], {"f": ""})
    assert not shell_with_error_text(["sh", "-c", "rm 3"], {"f": 3})
    assert not shell_with_error_text(["sh", "-c", "rm x"], {})
    assert not shell_with_error_text(["sh", "-c", "rm x"], {"f": "y"})


def test_run_argv_result(tmp_path: Path) -> None:
    run = run_argv([sys.executable, "-c", "import os,sys; print(os.getcwd()); "
                    "print(os.environ['HEAL_T']); sys.exit(3)"], str(tmp_path), 30,
                   env={"HEAL_T": "given"})
    assert run["argv"][0] == sys.executable and run["exit_code"] == 3
    assert run["timed_out"] is False and 0 < run["duration_s"] < 30
    assert run["duration_s"] == round(run["duration_s"], 3)
    assert run["tail"] == f"{os.path.realpath(tmp_path)}\ngiven\n"
    ok = run_argv([sys.executable, "-c", "pass"], str(tmp_path), 30)
    assert ok["exit_code"] == 0 and ok["tail"] == ""


def test_run_argv_finds_heals_own_tools_after_the_users_path(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    own = os.path.dirname(sys.executable)
    probe = [sys.executable, "-c", "import os; print(os.environ['PATH'])"]
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert run_argv(probe, str(tmp_path), 30)["tail"].strip() == f"/usr/bin:/bin{os.pathsep}{own}"
    monkeypatch.setenv("PATH", f"{own}:/bin")
    assert run_argv(probe, str(tmp_path), 30)["tail"].strip() == f"{own}:/bin"
    monkeypatch.setenv("PATH", "")
    assert run_argv(probe, str(tmp_path), 30)["tail"].strip() == own


def test_run_argv_timeout_and_missing_program(tmp_path: Path) -> None:
    run = run_argv([sys.executable, "-c", "print('started', flush=True); "
                    "import time; time.sleep(60)"], str(tmp_path), 0.5)
    assert run["timed_out"] is True and run["exit_code"] == 124
    assert run["tail"] == "started\n\n[heal: killed after 0.5s timeout]"
    assert 0.5 <= run["duration_s"] < 30
    missing = run_argv(["heal-no-such-program"], str(tmp_path), 5)
    assert missing["exit_code"] == 127 and missing["timed_out"] is False
    assert 0 <= missing["duration_s"] < 5
    assert missing["tail"].startswith("cannot run: ") and "heal-no-such-program" in \
        missing["tail"]
    assert missing["argv"] == ["heal-no-such-program"]


# -- verification outcomes -------------------------------------------------------------------

def run(phase: str, name: str, code: int) -> dict[str, Any]:
    return {"phase": phase, "name": name, "exit_code": code}


def test_judge_runs_outcomes() -> None:
    assert judge_runs([]) == (False, "nothing to run: the error has no command and heal.toml "
                                     "has no checks")
    assert judge_runs([run("before", "failing-command", 1),
                       run("after", "failing-command", 2)]) == (
        False, "the failing command still fails with the fix (exit 2)")
    assert judge_runs([run("before", "failing-command", 0),
                       run("after", "failing-command", 0)])[1].startswith(
        "the failure does not reproduce in a clean worktree (exit 0 without the fix)")
    # checks only (no trusted command): regressions decide
    checks = [run("before", "lint", 0), run("after", "lint", 1), run("before", "tests", 0),
              run("after", "tests", 0), run("before", "types", 0), run("after", "types", 2)]
    assert judge_runs(checks) == (False, "the fix breaks checks that passed before: lint, types")
    assert judge_runs(checks[2:4]) == (True, "no check regressed; the failing command was "
                                       "not re-run, so nothing shows the failure happens here "
                                       "or is gone with the fix")
    # a check with no "before" run is not a regression
    assert judge_runs([run("after", "lint", 1)])[0] is True
    # only one half of the failing command: not judged as a pair
    assert judge_runs([run("after", "failing-command", 1)])[0] is True


def test_failure_reproduced() -> None:
    assert failure_reproduced([]) is None
    assert failure_reproduced([run("after", "failing-command", 1),
                               run("before", "lint", 1)]) is None
    assert failure_reproduced([run("before", "failing-command", 2)]) is True
    assert failure_reproduced([run("before", "failing-command", 0)]) is False
    assert failure_reproduced([{"phase": "before", "name": "failing-command"}]) is True


def test_rel_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    err = ErrorEvent(id="e", text="x", tags={"cwd": str(tmp_path / "sub" / "dir")},
                     repo=Repo(path=str(tmp_path / "sub")))
    assert rel_cwd(err, tmp_path) == "sub/dir"
    assert rel_cwd(ErrorEvent(id="e", text="x", repo=Repo(path=str(tmp_path / "sub"))),
                   tmp_path) == "sub"
    assert rel_cwd(ErrorEvent(id="e", text="x"), tmp_path) == "."
    assert rel_cwd(ErrorEvent(id="e", text="x", tags={"cwd": "/elsewhere"}), tmp_path) == "."


# -- hostile paths -----------------------------------------------------------------------------

def test_diff_paths_strip_prefixes_and_tabs() -> None:
    diff = ("--- a/src/x.py\t2020-01-01\n+++ b/src/x.py\t2020-01-01\n"
            "+++ plain.py\ncopy from c/one.py\ncopy to  c/two.py \n--- /dev/null\n")
    assert diff_paths(diff) == ["src/x.py", "plain.py", "c/one.py", "c/two.py"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "out")
    os.symlink(root / "src", root / "inner")
    os.symlink(tmp_path / "outside", root / "src" / "deep")
    return root


def test_path_problem_reasons(tree: Path) -> None:
    pol = Policy(protected=("vendor/**", "src/secret.py"))
    outside = Path(os.path.realpath(tree.parent / "outside"))
    assert path_problem(tree, "", pol) == "empty path"
    assert path_problem(tree, "x/../../y", pol) == \
        "path 'x/../../y' contains '..' (paths must stay inside the repository)"
    assert path_problem(tree, "out/f", pol) == (
        f"path 'out/f': out is a symlink to {outside}, outside the repository; heal does not "
        "follow it")
    assert path_problem(tree, "src/deep/f", pol) == (
        f"path 'src/deep/f': deep is a symlink to {outside}, outside the repository; heal "
        "does not follow it")
    assert path_problem(tree, "/etc/passwd", pol) == \
        "path '/etc/passwd' is outside the repository (/etc/passwd)"
    through = str(tree / "out" / "f")  # absolute, through a symlink: no "(from ...)"
    assert path_problem(tree, through, pol) == (
        f"path {through!r}: out is a symlink to {outside}, outside the repository; heal does "
        "not follow it")
    assert path_problem(tree, "vendor/x.py", pol) == \
        "path 'vendor/x.py' is protected by policy glob 'vendor/**'"
    # a symlink inside the tree to a protected file is judged by where it leads
    assert path_problem(tree, "inner/secret.py", pol) == \
        "path 'inner/secret.py' is protected by policy glob 'src/secret.py'"
    assert path_problem(tree, "./vendor/y", pol) == \
        "path './vendor/y' is protected by policy glob 'vendor/**'"
    for fine in ("src/a.py", "inner/a.py", "new/file.py", str(tree / "src" / "a.py"), "."):
        assert path_problem(tree, fine, pol) is None, fine


def test_path_problem_from_the_working_directory(tree: Path) -> None:
    pol = Policy(protected=())
    # 'deep/f' is harmless from the root (no such path) but leaves the tree from src/
    assert path_problem(tree, "deep/f", pol) is None
    problem = path_problem(tree, "deep/f", pol, cwd=tree / "src")
    assert problem is not None and problem.startswith(f"path 'deep/f' (from {tree / 'src'}): "
                                                      "deep is a symlink to ")
    assert path_problem(tree, "deep/f", pol, cwd=tree) is None
    away = path_problem(tree, "f", pol, cwd=tree.parent / "outside")
    assert away == f"the working directory {tree.parent / 'outside'} is outside the repository"


def test_a_final_symlink_target_outside_is_named(tree: Path) -> None:
    os.symlink("../outside/../outside", tree / "loop")
    problem = path_problem(tree, "loop", Policy(protected=()))
    assert problem is not None and "loop is a symlink to" in problem
    os.symlink("/nonexistent-heal-target", tree / "dangling")
    assert path_problem(tree, "dangling", Policy(protected=())) == (
        "path 'dangling': dangling is a symlink to /nonexistent-heal-target, outside the "
        "repository; heal does not follow it")


def test_param_paths(tree: Path) -> None:
    values: list[Any] = ["-v", "", "src/a.py", "src", "a.py", "name", "../x", "src/a.py", 3,
                         "inner"]
    assert param_paths(tree, values) == ["src/a.py", "src", "../x", "inner"]
    assert param_paths(tree, ["a.py", "deep"], cwd=tree / "src") == ["a.py", "deep"]
    assert param_paths(tree, ["a.py"], cwd=None) == []


def test_fix_escape(tree: Path) -> None:
    assert fix_escape(tree, tree, ["src/a.py", "-f", "word"]) is None
    assert fix_escape(tree, tree, ["ok/x", "a/../../b"]) == \
        "path 'a/../../b' contains '..' (paths must stay inside the repository)"
    assert "out is a symlink to" in str(fix_escape(tree, tree, ["out/f"]))
    assert "deep is a symlink to" in str(fix_escape(tree, tree / "src", ["deep"]))
    assert fix_escape(tree, tree, ["/etc/passwd"]) == \
        "path '/etc/passwd' is outside the repository (/etc/passwd)"
    # an option's value is a path too (before: every argument starting with '-' was skipped)
    assert fix_escape(tree, tree, ["--output=/etc/passwd"]) == \
        "path '/etc/passwd' is outside the repository (/etc/passwd)"
    assert fix_escape(tree, tree, ["--out=src/a.py", "--jobs=4", "--verbose"]) is None


# -- the RQ helpers ----------------------------------------------------------------------------

def test_redis_url_of_keeps_the_socket_database_and_password() -> None:
    assert redis_url_of(redis.Redis(unix_socket_path="/tmp/r.sock", db=3)) == \
        "unix:///tmp/r.sock?db=3"
    assert redis_url_of(redis.Redis(host="h", port=7000, db=2, password="pw")) == \
        "redis://:pw@h:7000/2"
    assert redis_url_of(redis.Redis()) == "redis://localhost:6379/0"


def test_worker_argv_carries_no_credential() -> None:
    argv = worker_argv("/venv/bin/rq", "heal:verify")
    assert argv[:8] == ["/venv/bin/rq", "worker", "--max-idle-time", "20", "-q", "-w",
                        "pipeline.validate.rqworker.VerifyWorker", "-P"]
    assert Path(argv[8]) == Path(__file__).resolve().parents[2]
    assert argv[9] == "-n" and argv[10].startswith("heal-verify-") and len(argv[10]) == 20
    assert argv[11] == "heal:verify" and len(argv) == 12
    assert worker_argv("rq", "q")[10] != worker_argv("rq", "q")[10]


def test_check_queue_failed_result_shape() -> None:
    from pipeline.validate.rqjobs import CheckQueue

    class _Job:
        id = "job-1"

    spec = CheckSpec("lint", "after", ("ruff", "check"), "/r", 12.0)
    failed = CheckQueue._failed(spec, _Job(), "x" * 2500)  # type: ignore[arg-type]
    assert failed == {"argv": ["ruff", "check"], "exit_code": 1, "timed_out": False,
                      "duration_s": 12.0, "tail": "x" * 2000, "name": "lint",
                      "phase": "after", "job": "job-1"}
    timed = CheckQueue._failed(spec, _Job(), "watchdog", timed_out=True)  # type: ignore[arg-type]
    assert timed["exit_code"] == 124 and timed["timed_out"] is True
