"""The execution guard and the workflow gate on a real Redis, pinned on what they decide and
say: each state's StepDecision, the boundary of the quiet period, when a state began, the
audited transitions, the workflows listed in ``heal status``, and the gate's refusal text
(pipeline.guardrails.execution, pipeline.guardrails.gate)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import StreamUnavailable
from pipeline.events import ErrorEvent, Repo, Workflow
from pipeline.guardrails.execution import (
    ExecutionGuard,
    ExecutionPolicy,
    StepDecision,
    WorkflowState,
    execution_status,
    workflow_name,
)
from pipeline.guardrails.gate import WorkflowGate, gate_for, guard_at, policy_at
from pipeline.policy import Policy
from pipeline.policy_limits import Limits
from tests.integration._guardrails_support import Clock, Recorder

RUNNING, DEGRADED, QUARANTINED = (WorkflowState.RUNNING, WorkflowState.DEGRADED,
                                  WorkflowState.QUARANTINED)



def _quarantine(guard: ExecutionGuard, clock: Clock, workflow: str = "wf") -> None:
    for i in range(10):
        clock.now += 1
        guard.on_step_result(workflow, "s", False, f"k{i}")


def test_each_state_decides_what_heal_may_do(client: redis.Redis, settings: Settings) -> None:
    clock = Clock()
    guard = ExecutionGuard(client, settings, clock=clock, audit=Recorder())
    assert guard.state("wf") == (RUNNING, "")
    assert guard.since("wf") == 0.0
    assert guard.should_execute_step("wf") == StepDecision(True, True, RUNNING, 0.0, True, False,
                                                           "running")
    for _ in range(3):
        clock.now += 1
        guard.on_step_result("wf", "s", False, "E1")
    assert guard.state("wf") == (DEGRADED, "3 consecutive E1 failures")
    assert guard.since("wf") == clock.now
    assert guard.should_execute_step("wf", "s") == StepDecision(
        True, True, DEGRADED, 0.1, False, True, "workflow wf DEGRADED (3 consecutive E1 failures)")
    _quarantine(guard, clock)
    assert guard.state("wf") == (QUARANTINED, "10 failures within 600s")
    assert guard.should_execute_step("wf", "s") == StepDecision(
        False, False, QUARANTINED, 1.0, False, True,
        "workflow wf QUARANTINED (10 failures within 600s): no automatic fixes")


def test_the_quarantine_lifts_exactly_after_the_quiet_period(client: redis.Redis,
                                                             settings: Settings) -> None:
    clock = Clock()
    policy = ExecutionPolicy(quarantine_quiet_s=100.0)
    guard = ExecutionGuard(client, settings, policy, clock=clock, audit=Recorder())
    _quarantine(guard, clock)
    clock.now += 99
    assert guard.state("wf")[0] is QUARANTINED
    clock.now += 1
    assert guard.state("wf") == (DEGRADED, "quarantine lifted after a quiet period")
    assert guard.workflows() == [{"workflow": "wf", "state": "DEGRADED",
                                  "reason": "quarantine lifted after a quiet period",
                                  "since": clock.now - 100}]


def test_transitions_are_audited_with_the_step(client: redis.Redis, settings: Settings) -> None:
    clock = Clock()
    audit = Recorder()
    guard = ExecutionGuard(client, settings, ExecutionPolicy(degrade_after=2, recover_after=1),
                           clock=clock, audit=audit)
    assert guard.on_step_result("wf", "build", False) == (RUNNING, RUNNING, "")
    assert audit.entries == []
    assert guard.on_step_result("wf", "build", False) == (
        RUNNING, DEGRADED, "2 consecutive unknown failures")
    assert guard.on_step_result("wf", "test", True) == (
        DEGRADED, RUNNING, "1 consecutive successes")
    assert audit.entries == [
        ("execution.transition", "wf", {"from": "RUNNING", "to": "DEGRADED",
                                        "reason": "2 consecutive unknown failures",
                                        "step": "build"}),
        ("execution.transition", "wf", {"from": "DEGRADED", "to": "RUNNING",
                                        "reason": "1 consecutive successes", "step": "test"})]


def test_failures_without_an_event_id_each_count(client: redis.Redis,
                                                 settings: Settings) -> None:
    clock = Clock()
    guard = ExecutionGuard(client, settings, ExecutionPolicy(quarantine_failures=2), clock=clock,
                           audit=Recorder())
    guard.on_step_result("wf", "s", False, "a")
    assert guard.on_step_result("wf", "s", False, "b")[1] is QUARANTINED


def test_a_failing_audit_leaves_the_change_in_force(client: redis.Redis, settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = ExecutionGuard(client, settings, ExecutionPolicy(degrade_after=1), clock=clock,
                           audit=Recorder(fail=True))
    with caplog.at_level(logging.ERROR, logger="heal.execution"):
        assert guard.on_step_result("wf", "s", False, "x")[1] is DEGRADED
    assert "workflow wf RUNNING->DEGRADED (1 consecutive x failures) not audited: disk full" \
        in caplog.text
    assert guard.state("wf")[0] is DEGRADED


def test_the_default_auditor_writes_the_audit_file_anchored_in_the_guards_redis(
        client: redis.Redis, tmp_path: Path, prefix: str) -> None:
    from pipeline.guardrails.audit import read_anchor
    from tests._audit_ids import file_log_id

    settings = Settings(None, None, tmp_path, prefix)  # no URL: only the given client
    guard = ExecutionGuard(client, settings, ExecutionPolicy(degrade_after=1))
    guard.on_step_result("wf", "s", False, "x")
    path = settings.home / "audit.jsonl"
    assert '"execution.transition"' in path.read_text()
    assert [seq for seq, _ in read_anchor(client, settings, file_log_id(path))] == [1]


def test_status_lists_every_workflow_with_a_state(client: redis.Redis,
                                                  settings: Settings) -> None:
    start = float(int(time.time()))  # execution_status reads with the real clock
    clock = Clock(start)
    guard = ExecutionGuard(client, settings, ExecutionPolicy(degrade_after=1), clock=clock,
                           audit=Recorder())
    assert execution_status(client, settings) == {
        "counts": {"RUNNING": 0, "DEGRADED": 0, "QUARANTINED": 0}, "workflows": []}
    guard.on_step_result("repo:/src/b", "s", False, "x")
    clock.now += 5
    guard.on_step_result("a", "s", True)
    _quarantine(guard, clock, "c")
    status = execution_status(client, settings)
    assert status["counts"] == {"RUNNING": 1, "DEGRADED": 1, "QUARANTINED": 1}
    assert [(w["workflow"], w["state"]) for w in status["workflows"]] == [
        ("a", "RUNNING"), ("c", "QUARANTINED"), ("repo:/src/b", "DEGRADED")]
    assert status["workflows"][2] == {"workflow": "repo:/src/b", "state": "DEGRADED",
                                      "reason": "1 consecutive x failures",
                                      "since": start,
                                      "lift": "heal unquarantine --workflow repo:/src/b"}
    assert "lift" not in status["workflows"][0]  # (RUNNING: nothing to lift)
    # a workflow id is event text: the lift command the dashboard shows keeps it one word
    _quarantine(guard, clock, "x; rm -rf ~")
    [held] = [w for w in execution_status(client, settings)["workflows"]
              if w["workflow"] == "x; rm -rf ~"]
    assert held["lift"] == "heal unquarantine --workflow 'x; rm -rf ~'"
    guard.reset("x; rm -rf ~")
    guard.reset("c")
    assert guard.state("c") == (RUNNING, "")
    assert [w["workflow"] for w in guard.workflows()] == ["a", "repo:/src/b"]
    assert workflow_name("nightly", "/src") == "nightly"
    assert workflow_name("", "/src") == "repo:/src"


def test_a_dead_redis_is_stream_unavailable(dead_redis: redis.Redis, settings: Settings) -> None:
    guard = ExecutionGuard(dead_redis, settings,
                           audit=Recorder())
    for call in (lambda: guard.state("wf"), lambda: guard.since("wf"), guard.workflows,
                 lambda: guard.on_step_result("wf", "s", True), lambda: guard.reset("wf")):
        with pytest.raises(StreamUnavailable, match="execution state: Redis unreachable"):
            call()


def test_the_gate_says_why_and_how_to_lift() -> None:
    running = WorkflowGate("wf", RUNNING, "", 0.0, 0.7, False)
    assert running.auto_allowed and running.note() == ""
    assert running.refusal(0.7) == "" and running.refusal(0.7 - 1e-12) == ""
    assert running.refusal(0.5) == ("match confidence 0.50 is below 0.70 "
                                    "(execution.min_auto_confidence)")
    lift = "how to lift: `heal unquarantine --workflow wf`"
    degraded = WorkflowGate("wf", DEGRADED, "3 consecutive X failures", 1_795_000_000.0, 0.8,
                            True)
    note = (f"workflow wf is degraded (3 consecutive X failures, since 2026-11-18T11:06:40Z, "
            f"{lift}): automatic fixes need confidence >= 0.80 and every judge votes")
    assert degraded.auto_allowed and degraded.note() == note
    assert degraded.refusal(0.8) == ""
    assert degraded.refusal(0.75) == f"match confidence 0.75 is below 0.80; {note}"
    quarantined = WorkflowGate("wf", QUARANTINED, "", 0.0, 0.7, True)
    assert not quarantined.auto_allowed
    assert quarantined.refusal(1.0) == quarantined.note() == (
        f"workflow wf is quarantined (no reason recorded, since unknown, {lift}): "
        "nothing is applied automatically")
    assert degraded.to_dict() == {"workflow": "wf", "state": "DEGRADED",
                                  "reason": "3 consecutive X failures", "since": 1_795_000_000.0,
                                  "min_confidence": 0.8, "strict_validation": True}


def test_gate_for_adds_the_bonus_only_when_degraded(client: redis.Redis,
                                                    settings: Settings) -> None:
    error = ErrorEvent(id="e1", text="boom", workflow=Workflow(id="", step="lint"),
                       repo=Repo(path="/src/app"))
    gate = gate_for(client, settings, error, Policy())
    assert (gate.workflow, gate.state, gate.reason, gate.since, gate.strict) == (
        "repo:/src/app", RUNNING, "", 0.0, False)
    assert gate.min_confidence == pytest.approx(0.7)
    guard = ExecutionGuard(client, settings, audit=Recorder())
    for _ in range(3):
        guard.on_step_result("repo:/src/app", "lint", False, "X")
    gate = gate_for(client, settings, error, Policy())
    assert (gate.state, gate.strict) == (DEGRADED, True) and gate.since > 0
    assert gate.min_confidence == pytest.approx(0.8)
    # a repository's heal.toml may raise the bonus (a higher confidence is tighter)
    limits = Limits(tuple((p, 0.25 if p == "execution.degraded_confidence_bonus" else v)
                          for p, v in Limits().values),
                    from_file=frozenset({"execution.degraded_confidence_bonus"}))
    gate = gate_for(client, settings, error, Policy(limits=limits))
    assert gate.min_confidence == pytest.approx(0.95)


def test_policy_and_guard_of_a_path(tmp_path: Path, client: redis.Redis,
                                    settings: Settings) -> None:
    assert policy_at("", settings) == Policy()
    assert policy_at(str(tmp_path), settings) == Policy()  # not a git repository: defaults
    guard = guard_at(client, settings, str(tmp_path))
    assert guard.policy == Limits().execution()
    assert type(guard.audit).__name__ == "AlertingAudit"
