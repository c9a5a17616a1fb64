"""The lifecycle stage's small hooks, pinned on their effects: the escalation hook's
notification (which rules, what context a person gets), a step result feeding the precedent
learner, the one-candidate ranking, and the causal edges an applied fix proves
(pipeline.lifecycle.escalate, .steps, .ranking, .causes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.guardrails.escalation import LogSink, Notifier
from pipeline.guardrails.escalation_policy import EscalationPolicy, parse_escalation
from pipeline.guardrails.execution import WorkflowState
from pipeline.lifecycle.causes import CauseLearner
from pipeline.lifecycle.escalate import EscalationHook
from pipeline.lifecycle.ranking import Draw, rank_and_record
from pipeline.lifecycle.steps import record_step_result
from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.causal import LEARN_PRIOR

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


class History:
    def __init__(self, facts: dict[str, str], attempts: int = 1, first_seen: float = 0.0,
                 fixes: list[str] | None = None, unresolved: list[dict[str, Any]] | None = None
                 ) -> None:
        self.facts, self.summary = facts, (attempts, first_seen, fixes or [])
        self.rows = unresolved or []
        self.asked: list[str] = []

    def attempt_summary(self, fingerprint: str) -> tuple[int, float, list[str]]:
        self.asked.append(fingerprint)
        return self.summary

    def attempt_facts(self, error_id: str) -> dict[str, str]:
        return self.facts

    def unresolved(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self.rows


def _outcome(status: str, *, repo: str = "", tags: dict[str, Any] | None = None) -> OutcomeEvent:
    error = ErrorEvent(id="e1", text="Traceback\nValueError: boom",
                       workflow=Workflow(id="nightly", step="test"), repo=Repo(path=repo),
                       tags=tags or {})
    return OutcomeEvent(id="o1", error_id="e1", error=error, fix_id="f1", status=status,
                        detail="verification failed")


def _hook(tmp_path: Path, history: History, policies: dict[str, EscalationPolicy] | None = None,
          now: float = 10_000.0) -> tuple[EscalationHook, list[str]]:
    asked: list[str] = []

    def policy_of(path: str) -> EscalationPolicy:
        asked.append(path)
        return (policies or {}).get(path, EscalationPolicy())

    hook = EscalationHook(history, Notifier([LogSink(tmp_path / "n.jsonl")]), policy_of,
                          clock=lambda: now)
    return hook, asked


def _sent(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "n.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_unresolved_outcome_notifies_with_its_context(tmp_path: Path) -> None:
    history = History({"category": "MODERATE", "pattern_id": "db.lock"}, attempts=3,
                      first_seen=9_000.0, fixes=["f0", "f1"])
    policy = parse_escalation({"defaults": False, "rules": [
        {"name": "db", "when": "attempts", "attempts": 3, "patterns": ["db.*"],
         "categories": ["MODERATE"]}]})
    hook, asked = _hook(tmp_path, history, {"/src/app": policy})
    assert hook.after_outcome(_outcome("rolled_back", repo="/src/app"), "fp1") == {"log": "ok"}
    assert asked == ["/src/app"] and history.asked == ["fp1"]
    (note,) = _sent(tmp_path)
    assert (note["rule"], note["workflow"], note["step"], note["attempts"]) == (
        "db", "nightly", "test", 3)
    assert note["actions_tried"] == ["f0", "f1"]
    assert note["last_error"] == "verification failed\nTraceback\nValueError: boom"
    # a rule that needs another category or pattern does not fire
    for facts in ({"category": "SAFE", "pattern_id": "db.lock"},
                  {"category": "MODERATE", "pattern_id": "net.dns"}, {}):
        other, _ = _hook(tmp_path / "other", History(facts, attempts=3), {"/src/app": policy})
        assert other.after_outcome(_outcome("rolled_back", repo="/src/app"), "fp1") is None
    # an attempt without a known pattern never matches a rule that names patterns
    patterns_only = parse_escalation({"defaults": False, "rules": [
        {"name": "db", "when": "immediate", "patterns": ["db.*"]}]})
    unknown, _ = _hook(tmp_path / "unknown", History({}, attempts=3), {"/src/app": patterns_only})
    assert unknown.after_outcome(_outcome("rolled_back", repo="/src/app"), "fp1") is None


def test_the_repository_is_taken_from_the_cwd_tag_without_a_repo_path(tmp_path: Path) -> None:
    hook, asked = _hook(tmp_path, History({}))
    hook.after_outcome(_outcome("failed", tags={"cwd": "/work/here"}), "fp1")
    assert asked == ["/work/here"]


def test_resolved_outcomes_never_notify_and_risky_waits_notify_at_once(tmp_path: Path) -> None:
    hook, _ = _hook(tmp_path, History({"category": "RISKY"}, attempts=9))
    assert hook.after_outcome(_outcome("applied"), "fp1") is None
    assert hook.after_outcome(_outcome("suggested"), "fp1") == {"log": "ok"}
    assert _sent(tmp_path)[0]["rule"] == "risky-needs-human"
    safe, _ = _hook(tmp_path / "safe", History({"category": "SAFE"}, attempts=9))
    assert safe.after_outcome(_outcome("suggested"), "fp1") is None
    escalated, _ = _hook(tmp_path / "esc", History({}))
    escalated.after_outcome(_outcome("escalated"), "fp2")
    assert _sent(tmp_path / "esc")[0]["rule"] == "apply-escalated"


def test_the_sweep_checks_only_the_time_based_rules(tmp_path: Path) -> None:
    rows = [{"fingerprint": "fp1", "first_seen": 0.0, "attempts": 1, "workflow": "nightly",
             "step": "test", "status": "rolled_back", "repo": "/a", "fixes": ["f1"],
             "category": None, "pattern_id": "db.lock"},
            {"fingerprint": "fp2", "first_seen": 9_999.0, "attempts": 50, "workflow": "w",
             "step": "s", "status": "failed", "repo": "/a"}]
    hook, asked = _hook(tmp_path, History({}, unresolved=rows), now=86_400.0)
    assert hook.sweep() == 1
    assert asked == ["/a"]  # one policy read per repository
    (note,) = _sent(tmp_path)
    assert (note["fingerprint"], note["rule"], note["last_error"]) == (
        "fp1", "unfixed-for-a-day", "last outcome: rolled_back")
    assert (note["workflow"], note["step"], note["actions_tried"]) == ("nightly", "test", ["f1"])
    category_rule = parse_escalation({"defaults": False, "rules": [
        {"name": "risky-late", "when": "unresolved", "after_hours": 1,
         "categories": ["RISKY"]}]})
    rows[0]["category"] = "RISKY"
    risky, _ = _hook(tmp_path / "r", History({}, unresolved=rows), {"/a": category_rule},
                     now=86_400.0)
    assert risky.sweep() == 1 and _sent(tmp_path / "r")[0]["rule"] == "risky-late"
    untimed, _ = _hook(tmp_path / "u", History({}, unresolved=rows),
                       {"/a": parse_escalation({"defaults": False})}, now=86_400.0)
    assert untimed.sweep() == 0


class Guard:
    def __init__(self, after: WorkflowState) -> None:
        self.after = after
        self.calls: list[tuple[Any, ...]] = []

    def on_step_result(self, *args: Any) -> tuple[WorkflowState, WorkflowState, str]:
        self.calls.append(args)
        return WorkflowState.RUNNING, self.after, "why"


class Learner:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def observe(self, *args: Any) -> list[dict[str, Any]]:
        self.calls.append(args)
        return [{"fix": "learned"}]


def test_a_step_result_feeds_the_guard_and_the_learner() -> None:
    guard, learner = Guard(WorkflowState.RUNNING), Learner()
    report = record_step_result(guard, learner, workflow="wf", step="build", ok=True,  # type: ignore[arg-type]
                                fingerprint="fp", repo_path="/r", commit="c1", event_id="e1")
    assert guard.calls == [("wf", "build", True, "fp", "e1")]
    assert learner.calls == [("wf", "build", True, "/r", "c1", "fp")]
    assert (report.before, report.after, report.reason, report.learned,
            report.learning_paused) == (WorkflowState.RUNNING, WorkflowState.RUNNING, "why",
                                        [{"fix": "learned"}], False)
    paused_guard, paused = Guard(WorkflowState.DEGRADED), Learner()
    report = record_step_result(paused_guard, paused, workflow="wf", step="build", ok=False,  # type: ignore[arg-type]
                                kind="E1", fingerprint="fp", repo_path="/r", commit="c2")
    assert paused_guard.calls == [("wf", "build", False, "E1", "")]
    assert paused.calls == [("wf", "build", False, "/r", "c2", "fp")]  # the failure is kept
    assert report.learned == [] and report.learning_paused
    record_step_result(Guard(WorkflowState.DEGRADED), paused, workflow="wf", step="b", ok=True)  # type: ignore[arg-type]
    assert len(paused.calls) == 1  # a success while paused teaches nothing


def test_one_candidate_is_returned_as_is_and_not_recorded() -> None:
    class Store:
        def posteriors(self, fingerprint: str, fix_ids: list[str]) -> Any:
            raise AssertionError("one candidate needs no posterior")

        def record_ranking(self, fingerprint: str, draws: list[Draw]) -> None:
            raise AssertionError("one candidate is not recorded")

    assert rank_and_record(Store(), "fp", ["only"]) == [Draw("only", 1.0, 1.0, 1.0)]
    assert rank_and_record(Store(), "fp", []) == []


def test_an_applied_fix_proves_edges_to_the_other_errors_it_cleared(
        caplog: pytest.LogCaptureFixture) -> None:
    catalog = load_catalog()
    cause_fix = catalog.patterns["proc.port_in_use"].fix.id
    text = next((FIXTURES / "net.connection_refused").glob("*.txt")).read_text()
    observed: list[tuple[str, str, int]] = []

    class Graph:
        def observe(self, cause: str, effect: str, prior: int = LEARN_PRIOR) -> float:
            observed.append((cause, effect, prior))
            return 0.5

    learner = CauseLearner(catalog, Graph())
    error = ErrorEvent(id="e1", text=text)
    applied = OutcomeEvent(id="o1", error_id="e1", error=error, fix_id=cause_fix,
                           status="applied")
    with caplog.at_level(logging.INFO, logger="heal.lifecycle.causes"):
        assert learner.after_outcome(applied) == [
            ("proc.port_in_use", "net.connection_refused", 0.5)]
    assert caplog.messages == [
        "causal edge proc.port_in_use -> net.connection_refused observed (confidence 0.50)"]
    assert observed == [("proc.port_in_use", "net.connection_refused", LEARN_PRIOR)]
    for fix_id, status in ((cause_fix, "rolled_back"), ("unknown/fix", "applied")):
        other = OutcomeEvent(id="o2", error_id="e1", error=error, fix_id=fix_id, status=status)
        assert learner.after_outcome(other) == []


@pytest.mark.parametrize("status", ["rolled_back", "escalated", "failed", "skipped"])
def test_every_unresolved_status_is_checked(tmp_path: Path, status: str) -> None:
    hook, _ = _hook(tmp_path, History({}, attempts=3))
    assert hook.after_outcome(_outcome(status), "fp1") == {"log": "ok"}


def test_a_deprecated_fix_that_works_again_is_active_with_its_reason() -> None:
    from pipeline.lifecycle.graduation import Decision, LifecyclePolicy, after_outcome
    from pipeline.lifecycle.posterior import Posterior
    from pipeline.model import LifecycleState as S

    policy = LifecyclePolicy()
    assert after_outcome(S.DEPRECATED, Posterior(3, 5), "success", policy) == Decision(
        S.ACTIVE, "verified success after deprecation")
    assert after_outcome(S.DRAFT, Posterior(1, 0), "success", policy) == Decision(
        S.ACTIVE, "first verified success")
