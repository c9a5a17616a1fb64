"""The validate stage's judges and decision, pinned per safety category (issue 16: mutation
score of pipeline/validate): each judge's vote and reason at its limits, the panel each
category gets, the decision under every mode and what it tells the operator."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.events import CandidateEvent, ErrorEvent, Workflow
from pipeline.guardrails.execution import WorkflowState
from pipeline.guardrails.gate import WorkflowGate
from pipeline.model import Mode
from pipeline.policy import LLMJudgeConfig, Policy
from pipeline.validate.judges import (
    BlastRadiusJudge,
    Evidence,
    HistoryJudge,
    LLMJudge,
    VerificationJudge,
    Vote,
    collect_votes,
    needs_human,
    panel,
)
from pipeline.validate.request import FixRequest
from pipeline.validate.validator import HELD, automatic_refusal, decide, with_note
from pipeline.validate.verify import Verification


def request(category: str = "SAFE", state: str = "ACTIVE", kind: str = "command",
            rendered: dict[str, Any] | None = None, policy: Policy | None = None,
            command: tuple[str, ...] = ("make",), match: dict[str, Any] | None = None,
            trusted: tuple[str, ...] = ("make",), hold: str = "",
            fix_extra: dict[str, Any] | None = None) -> FixRequest:
    err = ErrorEvent(id="e1", text="boom " * 400 + "THE END", command=command,
                     workflow=Workflow(id="ci", step="build"))
    fix: dict[str, Any] = {"id": "fx", "kind": kind, "category": category, "state": state,
                           "title": "Format the code",
                           "rendered": rendered if rendered is not None
                           else {"argv": ["ruff", "format", "."]}, **(fix_extra or {})}
    cand = CandidateEvent(id="e1:lookup", error_id="e1", error=err, fix=fix, fine="fp",
                          match=match or {})
    return FixRequest(cand, fix, Path("/tmp"), policy or Policy(), trusted_command=trusted,
                      hold=hold)


def evidence(req: FixRequest, ver: Verification | None = None,
             history: dict[str, Any] | None = None) -> Evidence:
    return Evidence(req, [], ver or Verification(True, "original failure gone"), history or {})


# -- VerificationJudge -----------------------------------------------------------------------

def test_verification_judge_passes_the_verification_through() -> None:
    judge = VerificationJudge()
    assert judge.vote(evidence(request(), Verification(True, "gone"))) == \
        Vote("verification", True, "gone")
    assert judge.vote(evidence(request(), Verification(False, "still fails"))) == \
        Vote("verification", False, "still fails")


def test_verification_judge_on_deferred_fixes() -> None:
    deferred = Verification(True, "later", deferred=True)
    judge = VerificationJudge()
    # a command whose failing step is re-run after it
    vote = judge.vote(evidence(request("MODERATE"), deferred))
    assert vote.approve and vote.reason == ("deferred to apply; the failing step is re-run "
                                            "after the command")
    # a command with no failing command to re-run, and no steps: nothing proves it
    vote = judge.vote(evidence(request("MODERATE", command=()), deferred))
    assert not vote.approve
    assert vote.reason == "playbook has no validation steps to prove it worked"
    # a playbook with validation steps
    steps = {"steps": {"act": [{"argv": ["rm", "x"]}],
                       "validate": [{"argv": ["git", "status"]}, {"argv": ["true"]}]}}
    vote = judge.vote(evidence(request("MODERATE", kind="playbook", rendered=steps), deferred))
    assert vote.approve and vote.reason == "deferred to apply; 2 validation step(s)"
    no_validation = {"steps": {"act": [{"argv": ["rm", "x"]}]}}
    vote = judge.vote(evidence(request("MODERATE", kind="playbook", rendered=no_validation),
                               deferred))
    assert not vote.approve and "no validation steps" in vote.reason


# -- BlastRadiusJudge ------------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "files", "approve"), [
    (25, 5, True),     # exactly a quarter of 100 lines / 20 files
    (26, 5, False),
    (25, 6, False),
    (0, 0, True),
])
def test_blast_radius_judge_allows_a_quarter_of_the_policy_limits(
        lines: int, files: int, approve: bool) -> None:
    pol = Policy(max_diff_lines=100, max_files=20)
    ver = Verification(True, "ok", lines=lines, changed=[f"f{i}" for i in range(files)])
    vote = BlastRadiusJudge().vote(evidence(request(policy=pol), ver))
    assert vote.judge == "blast-radius" and vote.approve is approve
    assert vote.reason == (f"{lines} line(s) in {files} file(s); judge limit 25 lines, "
                           "5 files")


def test_blast_radius_judge_limit_never_below_one() -> None:
    pol = Policy(max_diff_lines=3, max_files=3)
    one = BlastRadiusJudge().vote(evidence(request(policy=pol),
                                           Verification(True, "ok", lines=1, changed=["a"])))
    assert one.approve and one.reason.endswith("judge limit 1 lines, 1 files")
    two = BlastRadiusJudge().vote(evidence(request(policy=pol),
                                           Verification(True, "ok", lines=2, changed=["a"])))
    assert not two.approve


def _playbook(n_steps: int, n_paths: int = 0) -> dict[str, Any]:
    act: list[dict[str, Any]] = [{"argv": ["echo", str(i)]} for i in range(n_steps)]
    act += [{"action": "remove", "args": {"path": f"p{i}"}} for i in range(n_paths)]
    return {"steps": {"act": act}}


@pytest.mark.parametrize(("steps", "paths", "approve"), [(10, 0, True), (8, 2, True),
                                                         (11, 0, False), (9, 2, False)])
def test_blast_radius_judge_counts_playbook_steps_and_paths(steps: int, paths: int,
                                                            approve: bool) -> None:
    req = request("MODERATE", kind="playbook", rendered=_playbook(steps, paths))
    vote = BlastRadiusJudge().vote(evidence(req, Verification(True, "x", deferred=True)))
    assert vote.approve is approve
    assert vote.reason == (f"playbook with {steps + paths} step(s), {steps + paths} running a "
                           "program or touching a path (judge limit 10)")


def test_blast_radius_judge_names_every_step_of_a_wait_and_retry_playbook() -> None:
    # Given net.rate_limited's playbook: three sleeps and a re-run, none acting on anything
    from pipeline.lookup.catalog import load_catalog

    fix = load_catalog().patterns["net.rate_limited"].fix
    steps = dict(fix.template)["steps"]
    req = request("MODERATE", kind="playbook", rendered={"steps": steps})
    vote = BlastRadiusJudge().vote(evidence(req, Verification(True, "x", deferred=True)))
    # Then it is approved and the reason counts its four steps (it once said "0 step(s)")
    assert vote.approve
    assert vote.reason == ("playbook with 4 step(s), 0 running a program or touching a path "
                           "(judge limit 10)")


# -- HistoryJudge ----------------------------------------------------------------------------

@pytest.mark.parametrize(("history", "approve", "reason"), [
    ({}, True, "state ACTIVE; applied 0, reverted 0, failed verification 0"),
    ({"applied": 2, "rolled_back": 1}, True,
     "state ACTIVE; applied 2, reverted 1, failed verification 0"),
    ({"applied": 1, "rolled_back": 1}, False, "reverted or failed 1 of 2 times"),
    ({"applied": 1, "failed": 1}, False, "reverted or failed 1 of 2 times"),
    ({"applied": 3, "rolled_back": 1, "failed": 1}, True,
     "state ACTIVE; applied 3, reverted 1, failed verification 1"),
    ({"applied": 2, "rolled_back": 1, "failed": 1}, False, "reverted or failed 2 of 4 times"),
    ({"applied": 0, "failed": 1}, False, "reverted or failed 1 of 1 times"),
])
def test_history_judge_refuses_a_fix_reverted_or_failed_half_the_time(
        history: dict[str, int], approve: bool, reason: str) -> None:
    vote = HistoryJudge().vote(evidence(request(), history=history))
    assert vote == Vote("history", approve, reason)


def test_history_judge_on_the_fix_state() -> None:
    assert HistoryJudge().vote(evidence(request(state="quarantined"))) == \
        Vote("history", False, "fix is QUARANTINED")
    assert HistoryJudge().vote(evidence(request(state="DEPRECATED"))) == \
        Vote("history", False, "fix is DEPRECATED")
    stateless = request(fix_extra={})
    del stateless.fix["state"]
    assert HistoryJudge().vote(evidence(stateless)).reason.startswith("state ACTIVE;")


# -- the panel per category --------------------------------------------------------------------

def names(judges: list[Any]) -> list[str]:
    return [j.name for j in judges]


def test_panel_per_category_and_strict() -> None:
    assert names(panel(request("SAFE"))) == ["verification"]
    assert names(panel(request("MODERATE"))) == ["verification", "blast-radius"]
    assert names(panel(request("RISKY"))) == ["verification", "blast-radius", "history"]
    # an unknown category is treated as RISKY; a lower-case one is read upper-case
    assert names(panel(request("UNHEARD-OF"))) == ["verification", "blast-radius", "history"]
    assert names(panel(request("safe"))) == ["verification"]
    # a DEGRADED workflow: every built-in judge votes
    assert names(panel(request("SAFE"), strict=True)) == ["verification", "blast-radius",
                                                          "history"]
    llm = Policy(llm=LLMJudgeConfig(enabled=True, url="http://x", model="m"))
    assert names(panel(request("MODERATE", policy=llm))) == ["verification", "blast-radius",
                                                             "llm"]


def test_collect_votes_asks_every_judge_of_the_panel() -> None:
    ev = evidence(request("RISKY"), Verification(True, "gone", lines=1, changed=["a"]),
                  {"applied": 1, "rolled_back": 1})
    votes = collect_votes(ev)
    assert [(v.judge, v.approve) for v in votes] == [("verification", True),
                                                     ("blast-radius", True),
                                                     ("history", False)]
    assert [v.judge for v in collect_votes(evidence(request("SAFE")), strict=True)] == \
        ["verification", "blast-radius", "history"]


def test_a_human_for_risky_unless_policy_says_otherwise() -> None:
    assert needs_human(request("RISKY"))
    assert not needs_human(request("RISKY", policy=Policy(human_for_risky=False)))
    assert not needs_human(request("MODERATE"))
    assert not needs_human(request("SAFE"))


def test_vote_to_dict() -> None:
    assert Vote("llm", True, "ok", 0.5, 7).to_dict() == {
        "judge": "llm", "approve": True, "reason": "ok", "cost_usd": 0.5, "tokens": 7}


# -- the LLM judge -----------------------------------------------------------------------------

class _Chat(BaseHTTPRequestHandler):
    reply: dict[str, Any] | bytes = {}
    seen: list[dict[str, Any]] = []
    delay_s = 0.0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        time.sleep(self.delay_s)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Chat.seen.append({"path": self.path, "body": body,
                           "auth": self.headers.get("Authorization"),
                           "type": self.headers.get("Content-Type")})
        data = self.reply if isinstance(self.reply, bytes) else json.dumps(self.reply).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def chat() -> Any:
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    _Chat.seen = []
    _Chat.delay_s = 0.0
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/"
    finally:
        server.shutdown()
        server.server_close()


def _llm(url: str, **kw: Any) -> LLMJudge:
    return LLMJudge(LLMJudgeConfig(enabled=True, url=url, model="judge-m", timeout_s=5, **kw))


def test_llm_judge_request_and_approval(chat: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_TEST_LLM_KEY", "k-123")
    _Chat.reply = {"choices": [{"message": {"content": "  approve - fine\nmore"}}],
                   "usage": {"total_tokens": 2345}}
    vote = _llm(chat, api_key_env="HEAL_TEST_LLM_KEY").vote(
        evidence(request("MODERATE"), Verification(True, "original failure gone")))
    assert vote == Vote("llm", True, "approve - fine\nmore", 0.00469, 2345)
    seen = _Chat.seen[-1]
    assert seen["path"] == "/v1/chat/completions"  # the trailing slash is not doubled
    assert seen["auth"] == "Bearer k-123" and seen["type"] == "application/json"
    body = seen["body"]
    assert body["model"] == "judge-m" and body["temperature"] == 0
    prompt = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "user"
    # the last 1500 characters of the error, the fix's title, kind and category, the evidence
    assert "\nError: " + ("boom " * 400 + "THE END")[-1500:] + "\n" in prompt
    assert "\nFix: Format the code (command, MODERATE)\n" in prompt
    assert prompt.endswith("\nVerification: original failure gone\n")


def test_llm_judge_rejection_without_key_or_usage(chat: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_TEST_LLM_NOKEY", raising=False)
    _Chat.reply = {"choices": [{"message": {"content": "REJECT " + "x" * 400}}]}
    req = request(fix_extra={})
    del req.fix["title"]
    vote = _llm(chat, api_key_env="HEAL_TEST_LLM_NOKEY").vote(evidence(req))
    assert not vote.approve and vote.reason == ("REJECT " + "x" * 400)[:300]
    assert vote.tokens == 0 and vote.cost_usd == 0.0
    assert _Chat.seen[-1]["auth"] is None
    assert "\nFix: fx (command, SAFE)\n" in _Chat.seen[-1]["body"]["messages"][0]["content"]


def test_llm_judge_tokens_default_to_zero(chat: str) -> None:
    _Chat.reply = {"choices": [{"message": {"content": "APPROVE"}}],
                   "usage": {"prompt_tokens": 5}}
    vote = _llm(chat).vote(evidence(request()))
    assert vote.approve and vote.tokens == 0 and vote.cost_usd == 0.0


def test_llm_judge_gives_up_after_its_timeout(chat: str) -> None:
    _Chat.reply = {"choices": [{"message": {"content": "APPROVE"}}]}
    _Chat.delay_s = 1.5
    judge = LLMJudge(LLMJudgeConfig(enabled=True, url=chat, model="m", timeout_s=0.2))
    vote = judge.vote(evidence(request()))
    assert not vote.approve and vote.reason.startswith("LLM judge unavailable: ")


@pytest.mark.parametrize("reply", [b"not json", {"choices": []}, {"nothing": 1},
                                   {"choices": [{"message": {}}]}])
def test_llm_judge_refuses_on_a_malformed_answer(chat: str, reply: Any) -> None:
    _Chat.reply = reply
    vote = _llm(chat).vote(evidence(request()))
    assert vote.judge == "llm" and not vote.approve
    assert vote.reason.startswith("LLM judge unavailable: ")


# -- the decision ------------------------------------------------------------------------------

#: the evidence an automatic application needs: the failure reproduced without the fix
REPRODUCED = [{"phase": "before", "name": "failing-command", "exit_code": 1},
              {"phase": "after", "name": "failing-command", "exit_code": 0}]
OK = Verification(True, "original failure gone", REPRODUCED)
YES = [Vote("verification", True, "ok")]


def test_decide_reasons_per_outcome() -> None:
    assert decide(request(), Mode.AUTO, Verification(False, "still fails"), YES) == \
        ("reject", "verification failed: still fails")
    assert decide(request(), Mode.AUTO, OK, [Vote("a", True, "ok"), Vote("b", False, "big"),
                                             Vote("c", False, "bad")]) == \
        ("reject", "judges refused: b: big; c: bad")
    assert decide(request(state="quarantined"), Mode.AUTO, OK, YES) == \
        ("reject", "fix is QUARANTINED: never applied until `heal unquarantine`")
    assert decide(request(state="DEPRECATED"), Mode.AUTO, OK, YES)[0] == "reject"
    assert decide(request(), Mode.AUTO_SAFE, OK, YES) == \
        ("apply", "mode auto-safe: 1 judge(s) approved; original failure gone")
    assert decide(request(), Mode.SUGGEST, OK, YES) == (
        "suggest", "mode suggest: run `heal apply e1` to apply; 1 judge(s) approved; "
        "original failure gone")


def test_decide_risky_needs_a_human_unless_policy_says_otherwise() -> None:
    assert decide(request("RISKY", "AUTOMATED"), Mode.AUTO, OK, YES * 3) == (
        "suggest", "RISKY fix needs a human: heal apply e1; 3 judge(s) approved; "
        "original failure gone")
    free = Policy(human_for_risky=False)
    assert decide(request("RISKY", "AUTOMATED", policy=free), Mode.AUTO, OK, YES)[0] == "apply"
    assert decide(request("RISKY", "ACTIVE", policy=free), Mode.AUTO, OK, YES)[0] == "suggest"


@pytest.mark.parametrize(("category", "state", "mode", "decision"), [
    ("SAFE", "ACTIVE", Mode.AUTO, "apply"),
    ("SAFE", "DRAFT", Mode.AUTO, "suggest"),
    ("SAFE", "DRAFT", Mode.AUTO_SAFE, "suggest"),
    ("SAFE", "AUTOMATED", Mode.AUTO_SAFE, "apply"),
    ("MODERATE", "AUTOMATED", Mode.AUTO, "apply"),
    ("MODERATE", "ACTIVE", Mode.AUTO, "suggest"),
    ("MODERATE", "AUTOMATED", Mode.AUTO_SAFE, "suggest"),
    ("MODERATE", "AUTOMATED", Mode.SUGGEST, "suggest"),
    ("SAFE", "ACTIVE", Mode.OBSERVE, "suggest"),
])
def test_decide_per_category_state_and_mode(category: str, state: str, mode: Mode,
                                            decision: str) -> None:
    assert decide(request(category, state), mode, OK, YES)[0] == decision


def test_decide_holds_a_fix_waiting_for_a_person() -> None:
    held = request(hold="package requests is not declared",
                   rendered={"argv": ["pip", "install", "requests"]})
    assert decide(held, Mode.AUTO, OK, YES) == (
        "suggest", "package requests is not declared; a person approves it by name: heal "
        "apply e1 (runs: pip install requests); 1 judge(s) approved; original failure gone")


def test_decide_says_a_hold_once_when_verification_gave_the_same_reason() -> None:
    """A taught command held outside its repository: the verifier's reason is the hold
    itself, which the decision used to repeat after the judges' count."""
    why = "taught command not run to verify it: it was taught in /a"
    held = request(hold=why, rendered={"argv": ["./fix.sh"]})
    decision, reason = decide(held, Mode.AUTO, Verification(True, why, deferred=True), YES)
    assert decision == "suggest" and reason.count(why) == 1, reason
    assert reason.endswith("(runs: ./fix.sh); 1 judge(s) approved")


def test_decide_a_deferred_fix_without_a_trusted_command_waits() -> None:
    deferred = Verification(True, "later", deferred=True)
    untrusted = request("MODERATE", "AUTOMATED", trusted=())
    assert decide(untrusted, Mode.AUTO, deferred, YES) == (
        "suggest", "mode auto: the failing command is not trusted, so nothing would verify "
        "this fix when applied; a person decides: heal apply e1; 1 judge(s) approved; later")
    trusted = request("MODERATE", "AUTOMATED")
    assert decide(trusted, Mode.AUTO, deferred, YES)[0] == "apply"
    # verified in the worktree with the failure reproduced there: applied by itself
    assert decide(request(trusted=()), Mode.AUTO, OK, YES)[0] == "apply"
    # checks alone (the failing command was not re-run) prove nothing about the failure
    checks_only = Verification(True, "no check regressed", [
        {"phase": "before", "name": "tests", "exit_code": 0},
        {"phase": "after", "name": "tests", "exit_code": 0}])
    decision, reason = decide(request(trusted=()), Mode.AUTO, checks_only, YES)
    assert decision == "suggest"
    assert reason.startswith("not applied automatically: no run of the failing command "
                             "showed the failure in this repository")


def _gate(state: WorkflowState, min_confidence: float = 0.0, reason: str = "3 failures",
          ) -> WorkflowGate:
    return WorkflowGate("ci", state, reason, 0.0, min_confidence,
                        state is WorkflowState.DEGRADED)


def test_decide_automatic_refusals_turn_apply_into_suggest() -> None:
    coarse = request(match={"via": "coarse", "score": 0.99})
    decision, reason = decide(coarse, Mode.AUTO, OK, YES)
    assert decision == "suggest"
    assert reason == (f"{HELD}matched by its coarse fingerprint alone (a learned mapping, not "
                      "a detection rule or the exact error): never enough for an automatic "
                      "fix; run `heal apply e1` to apply; 1 judge(s) approved; original "
                      "failure gone")
    low = request(match={"score": 0.5})
    gate = _gate(WorkflowState.DEGRADED, min_confidence=0.8)
    decision, reason = decide(low, Mode.AUTO, OK, YES, gate)
    assert decision == "suggest" and reason.startswith(
        f"{HELD}match confidence 0.50 is below 0.80; workflow ci is degraded")
    assert decide(request(match={"score": 0.9}), Mode.AUTO, OK, YES, gate)[0] == "apply"
    # no match score: full confidence
    assert decide(request(), Mode.AUTO, OK, YES, gate)[0] == "apply"
    quarantined = _gate(WorkflowState.QUARANTINED, reason="too many rollbacks")
    decision, reason = decide(request(), Mode.AUTO, OK, YES, quarantined)
    assert decision == "suggest" and "workflow ci is quarantined (too many rollbacks" in reason


def test_automatic_refusal() -> None:
    assert automatic_refusal(request(), None) == ""
    assert automatic_refusal(request(match={"via": "fine", "score": 0.1}), None) == ""
    assert "coarse fingerprint alone" in automatic_refusal(request(match={"via": "coarse"}),
                                                           None)
    running = _gate(WorkflowState.RUNNING, min_confidence=0.7)
    assert automatic_refusal(request(match={"score": 0.7}), running) == ""
    assert automatic_refusal(request(match={"score": 0.6}), running) == \
        "match confidence 0.60 is below 0.70 (execution.min_auto_confidence)"


def test_with_note_says_the_workflow_state_once() -> None:
    from pipeline.events import VerdictEvent

    verdict = VerdictEvent(id="e1:validate", error_id="e1", error=request().candidate.error,
                           decision="suggest", reason="mode suggest")
    assert with_note(verdict, _gate(WorkflowState.RUNNING)) is verdict
    degraded = _gate(WorkflowState.DEGRADED, 0.8)
    noted = with_note(verdict, degraded)
    assert noted.reason == f"mode suggest; {degraded.note()}"
    assert with_note(noted, degraded).reason == noted.reason


# -- the mode --------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy_mode", "tag", "attested", "ceiling", "mode"), [
    (Mode.AUTO, None, False, None, Mode.AUTO),
    (Mode.AUTO, None, False, Mode.SUGGEST, Mode.SUGGEST),      # the operator's ceiling
    (Mode.AUTO, "observe", False, None, Mode.OBSERVE),         # a tag may lower it
    (Mode.SUGGEST, "auto", False, None, Mode.SUGGEST),         # ...not raise it
    (Mode.SUGGEST, "auto", True, None, Mode.AUTO),             # heal run --mode may
    (Mode.SUGGEST, "auto", True, Mode.AUTO_SAFE, Mode.AUTO_SAFE),
])
def test_effective_mode(policy_mode: Mode, tag: str | None, attested: bool,
                        ceiling: Mode | None, mode: Mode) -> None:
    from pipeline.trust.boundary import Trust
    from pipeline.trust.operator import OperatorConfig
    from pipeline.validate.validator import effective_mode

    tags = {"mode": tag} if tag else {}
    err = ErrorEvent(id="e1", text="x", tags=tags)
    cand = CandidateEvent(id="e1:lookup", error_id="e1", error=err)
    trust = Trust(Path("/tmp"), attested, True, (), "", OperatorConfig())
    assert effective_mode(Policy(mode=policy_mode), cand, trust, ceiling) is mode
