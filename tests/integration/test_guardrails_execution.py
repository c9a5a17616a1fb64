"""Execution state per workflow on a real Redis (failure-injection scenarios of the issue)."""

from __future__ import annotations

from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from tests.integration._guardrails_support import Clock


def _guard(redis_url: str, tmp_path: Path, prefix: str, clock: Clock) -> ExecutionGuard:
    return ExecutionGuard(redis.Redis.from_url(redis_url), Settings(redis_url, None, tmp_path,
                                                                    prefix), clock=clock)


def test_three_consecutive_target_not_found_degrade(redis_url, tmp_path, prefix) -> None:
    clock = Clock()
    guard = _guard(redis_url, tmp_path, prefix, clock)
    for _ in range(2):
        assert guard.on_step_result("wf", "build", False, "TARGET_NOT_FOUND")[1] == "RUNNING"
        clock.now += 120
    guard.on_step_result("wf", "build", False, "OTHER")  # a different kind breaks the streak
    for _ in range(2):
        clock.now += 120
        guard.on_step_result("wf", "build", False, "TARGET_NOT_FOUND")
    clock.now += 120
    before, after, why = guard.on_step_result("wf", "build", False, "TARGET_NOT_FOUND")
    assert (before, after) == (WorkflowState.RUNNING, WorkflowState.DEGRADED)
    assert "3 consecutive TARGET_NOT_FOUND" in why
    decision = guard.should_execute_step("wf", "build")
    assert decision.execute and decision.strict_validation and not decision.learning
    assert decision.min_confidence_bonus > 0
    for _ in range(3):
        guard.on_step_result("wf", "build", True)
    assert guard.state("wf")[0] is WorkflowState.RUNNING


def test_ten_failures_in_ten_minutes_quarantine(redis_url, tmp_path, prefix) -> None:
    clock = Clock()
    guard = _guard(redis_url, tmp_path, prefix, clock)
    for i in range(10):
        clock.now += 50
        state = guard.on_step_result("wf", "test", False, f"kind-{i}")[1]
    assert state is WorkflowState.QUARANTINED
    decision = guard.should_execute_step("wf", "test")
    assert not decision.execute and not decision.auto_fix
    assert guard.should_execute_step("other", "test").auto_fix  # per workflow
    clock.now += 3600
    assert guard.state("wf")[0] is WorkflowState.DEGRADED  # lifted after a quiet hour
    guard.reset("wf")
    assert guard.state("wf")[0] is WorkflowState.RUNNING


def test_failures_spread_out_do_not_quarantine(redis_url, tmp_path, prefix) -> None:
    clock = Clock()
    guard = _guard(redis_url, tmp_path, prefix, clock)
    for i in range(12):
        clock.now += 120
        guard.on_step_result("wf", "test", False, f"kind-{i}")
    assert guard.state("wf")[0] is WorkflowState.RUNNING


def test_only_allowed_transitions(redis_url, tmp_path, prefix) -> None:
    import uuid

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    allowed = {("RUNNING", "DEGRADED"), ("RUNNING", "QUARANTINED"), ("DEGRADED", "RUNNING"),
               ("DEGRADED", "QUARANTINED"), ("QUARANTINED", "DEGRADED")}
    steps = st.lists(st.tuples(st.booleans(), st.sampled_from(["A", "B"]),
                               st.sampled_from([1, 30, 400, 4000])), max_size=40)

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps)
    def run(seq: list[tuple[bool, str, int]]) -> None:
        clock = Clock()
        clock.now = 1_000_000.0
        guard = _guard(redis_url, tmp_path, f"{prefix}{uuid.uuid4().hex[:6]}", clock)
        for ok, kind, wait in seq:
            clock.now += wait
            before, after, _ = guard.on_step_result("wf", "s", ok, kind)
            if before != after:
                assert (before.value, after.value) in allowed

    run()


def test_quarantine_lifts_to_degraded_not_straight_to_running(redis_url, tmp_path,
                                                              prefix) -> None:
    clock = Clock()
    clock.now = 1_000_000.0
    guard = _guard(redis_url, tmp_path, prefix, clock)
    for i in range(10):
        clock.now += 10
        guard.on_step_result("wf", "s", False, f"k{i}")
    guard.on_step_result("wf", "s", True)
    guard.on_step_result("wf", "s", True)
    clock.now += 3600
    assert guard.on_step_result("wf", "s", True)[1] is WorkflowState.DEGRADED


def test_state_changes_are_audited(redis_url, tmp_path, prefix) -> None:
    clock = Clock()
    guard = _guard(redis_url, tmp_path, prefix, clock)
    for _ in range(3):
        guard.on_step_result("wf", "build", False, "X")
    text = (tmp_path / "audit.jsonl").read_text()
    assert '"execution.transition"' in text and '"to":"DEGRADED"' in text


def test_cli_unquarantines_a_workflow(heal_env, redis_url, capsys) -> None:
    from pipeline.cli import main

    settings = Settings.from_env()
    guard = ExecutionGuard(redis.Redis.from_url(redis_url), settings)
    for i in range(10):
        guard.on_step_result("nightly", "test", False, f"k{i}")
    assert guard.state("nightly")[0] is WorkflowState.QUARANTINED
    assert main(["unquarantine", "--workflow", "nightly"]) == 0
    assert "QUARANTINED -> RUNNING" in capsys.readouterr().out
    assert guard.state("nightly")[0] is WorkflowState.RUNNING
    # nothing held back (lifted already, or a name never seen): exit 1, no transition
    assert main(["unquarantine", "--workflow", "nightly"]) == 1
    assert "is unknown here" in capsys.readouterr().out  # a reset leaves no state
    guard.on_step_result("nightly", "test", False, "k0")  # one failure: known, RUNNING
    assert main(["unquarantine", "--workflow", "nightly"]) == 1
    assert "is RUNNING: nothing to lift" in capsys.readouterr().out
    assert main(["unquarantine"]) == 2
