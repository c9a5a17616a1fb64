"""Fast unit tests: paths, secrets, shell refusal, the watchdog, judges and the decision."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.events import CandidateEvent, ErrorEvent
from pipeline.model import Mode
from pipeline.policy import LLMJudgeConfig, Policy
from pipeline.validate.judges import Evidence, LLMJudge, Vote, panel
from pipeline.validate.paths import diff_paths, path_problem
from pipeline.validate.request import FixRequest
from pipeline.validate.runner import run_argv, shell_with_error_text
from pipeline.validate.secrets import diff_size, find_secrets
from pipeline.validate.validator import decide
from pipeline.validate.verify import Verification, judge_runs


def req(category: str = "SAFE", state: str = "ACTIVE", llm: bool = False,
        root: Path = Path("/tmp")) -> FixRequest:
    err = ErrorEvent(id="e", text="boom", command=("make",))
    fix = {"id": "f", "kind": "command", "category": category, "state": state,
           "rendered": {"argv": ["ruff", "format", "."]}}
    cand = CandidateEvent(id="e:lookup", error_id="e", error=err, fix=fix)
    llm_config = LLMJudgeConfig(enabled=True, url="http://x", model="m")
    policy = Policy(llm=llm_config) if llm else Policy()
    return FixRequest(cand, fix, root, policy)


def test_diff_paths_include_renames_and_skip_dev_null() -> None:
    diff = ("--- a/x.py\n+++ b/x.py\n--- /dev/null\n+++ b/new.py\n"
            "rename from old/a.py\nrename to new/a.py\n")
    assert diff_paths(diff) == ["x.py", "new.py", "old/a.py", "new/a.py"]


def test_path_problem(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("")
    os.symlink("/etc", tmp_path / "etc-link")
    pol = Policy(protected=(".git", ".git/**", "vendor/**"))
    assert path_problem(tmp_path, "ok.py", pol) is None
    assert "'..'" in str(path_problem(tmp_path, "a/../../x", pol))
    assert "outside" in str(path_problem(tmp_path, "etc-link/passwd", pol))
    assert "outside" in str(path_problem(tmp_path, "/etc/passwd", pol))
    assert "protected" in str(path_problem(tmp_path, "vendor/lib.py", pol))
    assert "protected" in str(path_problem(tmp_path, ".git/config", pol))


def test_secrets_and_size() -> None:
    diff = "+++ b/x\n+key = '-----BEGIN RSA PRIVATE KEY-----'\n+password = \"hunter2hunter2\"\n-x\n"
    assert find_secrets(diff) == ["private_key", "password_literal"]
    assert find_secrets("+password = os.environ['PW']\n") == []
    assert diff_size("diff --git a/x b/x\n+++ b/x\n+a\n-b\n") == (2, 1)


def test_shell_refused_only_with_error_text() -> None:
    assert not shell_with_error_text(["sh", "-c", "! pgrep -x git"], {"lock": "/r/.git/x"})
    assert shell_with_error_text(["bash", "-c", "rm $(boom)"], {"file": "$(boom)"})
    assert not shell_with_error_text(["rm", "$(boom)"], {"file": "$(boom)"})


def test_watchdog_kills_the_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    run = run_argv(["sh", "-c", "sleep 600 & sleep 600"], str(tmp_path), 0.3)
    assert run["timed_out"] and run["exit_code"] == 124
    # far below the 600 s the background child would hold the pipes if it survived
    assert time.monotonic() - started < 60
    assert run_argv(["no-such-program-x"], str(tmp_path), 1)["exit_code"] == 127


def runs(before: int, after: int, check_before: int = 0, check_after: int = 0
         ) -> list[dict[str, Any]]:
    return [{"phase": "before", "name": "failing-command", "exit_code": before},
            {"phase": "after", "name": "failing-command", "exit_code": after},
            {"phase": "before", "name": "tests", "exit_code": check_before},
            {"phase": "after", "name": "tests", "exit_code": check_after}]


@pytest.mark.parametrize(("evidence", "ok", "why"), [
    (runs(1, 0), True, "failure gone"),
    (runs(0, 0), False, "does not reproduce"),
    (runs(1, 1), False, "still fails"),
    (runs(1, 0, 0, 1), False, "breaks checks that passed before: tests"),
    (runs(1, 0, 1, 1), True, "failure gone"),  # already failing check: not a regression
])
def test_judge_runs(evidence: list[dict[str, Any]], ok: bool, why: str) -> None:
    passed, reason = judge_runs(evidence)
    assert passed is ok and why in reason


def test_panel_size_follows_category() -> None:
    assert [j.name for j in panel(req("SAFE"))] == ["verification"]
    assert len(panel(req("MODERATE"))) == 2
    assert len(panel(req("RISKY"))) == 3
    assert [j.name for j in panel(req("SAFE", llm=True))] == ["verification", "llm"]


@pytest.mark.parametrize(("category", "state", "mode", "decision"), [
    ("SAFE", "ACTIVE", Mode.AUTO_SAFE, "apply"),
    ("SAFE", "ACTIVE", Mode.SUGGEST, "suggest"),
    ("MODERATE", "ACTIVE", Mode.AUTO_SAFE, "suggest"),
    ("MODERATE", "AUTOMATED", Mode.AUTO, "apply"),
    ("MODERATE", "AUTOMATED", Mode.AUTO_SAFE, "suggest"),
    ("RISKY", "AUTOMATED", Mode.AUTO, "suggest"),  # a human for RISKY
])
def test_decide(category: str, state: str, mode: Mode, decision: str) -> None:
    ok = Verification(True, "original failure gone", runs(1, 0))
    votes = [Vote("verification", True, "ok")]
    assert decide(req(category, state), mode, ok, votes)[0] == decision
    assert decide(req(category, state), mode, Verification(False, "no"), votes)[0] == "reject"
    assert decide(req(category, state), mode, ok, [Vote("x", False, "no")])[0] == "reject"


class _Chat(BaseHTTPRequestHandler):
    answer = "APPROVE: mechanical formatting change"
    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        assert body["messages"][0]["role"] == "user"
        _Chat.prompts.append(body["messages"][0]["content"])
        data = json.dumps({"choices": [{"message": {"content": self.answer}}],
                           "usage": {"total_tokens": 1500}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


def test_llm_judge_against_an_openai_compatible_endpoint() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        judge = LLMJudge(LLMJudgeConfig(enabled=True, url=url, model="m"))
        vote = judge.vote(Evidence(req(), [], Verification(True, "ok"), {}))
        assert vote.approve and vote.cost_usd == pytest.approx(0.003)
        # the judge is told what it reviews and how to answer, with the error and the fix
        prompt = _Chat.prompts[-1]
        assert prompt.startswith("You review an automated fix. Answer APPROVE or REJECT on "
                                 "the first line, then one sentence why.\nError: boom\n")
        down = LLMJudge(LLMJudgeConfig(enabled=True, url="http://127.0.0.1:9/v1", model="m",
                                       timeout_s=1))
        refused = down.vote(Evidence(req(), [], Verification(True, "ok"), {}))
        assert not refused.approve and "unavailable" in refused.reason
    finally:
        server.shutdown()


def test_worktrees_never_inside_the_repository(tmp_path: Path) -> None:
    from pipeline.validate.verify import Verifier

    inside = Verifier(None, tmp_path / ".heal" / "worktrees")  # type: ignore[arg-type]
    assert tmp_path not in inside._work_dir_for(tmp_path).parents
    outside = Verifier(None, tmp_path / "home" / "worktrees")  # type: ignore[arg-type]
    assert outside._work_dir_for(tmp_path / "repo") == tmp_path / "home" / "worktrees"


@pytest.mark.parametrize(("state", "history", "approve"), [
    ("ACTIVE", {}, True),
    ("ACTIVE", {"applied": 9, "rolled_back": 1}, True),
    ("ACTIVE", {"applied": 1, "failed": 2}, False),
    ("QUARANTINED", {"applied": 50}, False),
    ("DEPRECATED", {"applied": 50}, False),
])
def test_history_judge(state: str, history: dict[str, int], approve: bool) -> None:
    from pipeline.validate.judges import HistoryJudge

    vote = HistoryJudge().vote(Evidence(req(state=state), [], Verification(True, "ok"), history))
    assert vote.approve is approve


def test_only_lock_files_directly_in_the_repositorys_git_are_allowed_to_playbooks(
        tmp_path: Path) -> None:
    from pipeline.validate.preflight import _git_internal_ok

    r = req(root=tmp_path)
    assert _git_internal_ok(r, ".git/index.lock")
    assert _git_internal_ok(r, str(tmp_path / ".git" / "index.lock"))
    assert not _git_internal_ok(r, ".git/HEAD")
    assert not _git_internal_ok(r, ".git/refs/heads/main.lock")
    assert not _git_internal_ok(r, ".git/..lock")  # a '..' anywhere is refused
