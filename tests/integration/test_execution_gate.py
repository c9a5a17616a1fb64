"""The workflow execution state gates what heal does on its own, end to end through
`heal run` on the real embedded engines: failures of `heal run` move the workflow to DEGRADED
(stricter thresholds in force) and QUARANTINED (nothing applied automatically, and the
decision says why and how to lift it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.events import ErrorEvent, VerdictEvent
from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from pipeline.validate.runner import run_argv
from tests.scenarios.catalog import BY_NAME, build, tree_state

FAIL = ["sh", "-c", "echo 'ValueError: config key missing' >&2; exit 1"]



@pytest.fixture
def scenario_root(tmp_path: Path, heal_env: dict[str, str], own_database: str,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    # (a database of its own: the verdicts judge the fix's history, which a test run
    # before it may have filled with rollbacks of the same seed fix in the shared one)
    _, root = build("unused-import", tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return root


def _policy(root: Path, text: str) -> None:
    (root / "heal.toml").write_text(text)
    git(root, "add", "heal.toml")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "policy")


def _state(workflow: str) -> WorkflowState:
    settings = Settings.from_env()
    return ExecutionGuard(redis.Redis.from_url(settings.redis_url), settings).state(workflow)[0]


def _last_verdict() -> VerdictEvent:
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.redis_url)
    (_, fields), = client.xrevrange(settings.stream("errors"), count=1)
    error = ErrorEvent.decode(fields[b"event"])
    raw = client.get(settings.key("validate", "verdict", error.id))
    assert isinstance(raw, bytes), "the validate stage decided nothing for the last error"
    return VerdictEvent.decode(raw)


def _heal_fix(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["run", "--mode", "auto-safe", "--timeout", "120", "--workflow", "nightly",
                   *extra, "--", *BY_NAME["unused-import"].command])
    return status, capsys.readouterr().err


def test_ten_failures_quarantine_the_workflow_and_the_next_safe_fix_is_not_applied(
        scenario_root: Path, capsys: pytest.CaptureFixture[str],
        operator_toml: Callable[[str], Path]) -> None:
    # dedupe off, so the same fix may be tried again at the same commit once lifted (the
    # operator's to allow: a repository's heal.toml may only tighten it)
    operator_toml("[limits]\ndedupe_minutes = 0\n")
    # Given ten failing `heal run` steps of workflow "nightly" within ten minutes
    for i in range(10):
        argv = ["sh", "-c", f"echo 'step {i} failed: error E{i}' >&2; exit 1"]
        assert main(["run", "--no-wait", "--mode", "observe", "--workflow", "nightly", "--",
                     *argv]) == 1
    # Then `heal run` recorded them through the execution guard: the workflow is QUARANTINED
    assert _state("nightly") is WorkflowState.QUARANTINED
    assert "is now QUARANTINED" in capsys.readouterr().err
    before = tree_state(scenario_root)

    # When a SAFE, verified fix comes along in mode auto-safe
    status, err = _heal_fix(capsys)

    # Then it is suggested, not applied, and the decision says why and how to lift it
    assert status != 0
    assert tree_state(scenario_root) == before
    assert run_argv(list(BY_NAME["unused-import"].command), str(scenario_root), 60)[
        "exit_code"] != 0
    assert "workflow nightly is quarantined (10 failures within 600" in err
    assert "how to lift: `heal unquarantine --workflow nightly`" in err
    verdict = _last_verdict()
    assert verdict.decision == "suggest" and "nothing is applied automatically" in verdict.reason

    # When a person lifts it, Then the same fix is applied automatically again
    assert main(["unquarantine", "--workflow", "nightly"]) == 0
    capsys.readouterr()
    status, err = _heal_fix(capsys)
    assert status == 0, err
    assert "applied and verified" in err


def test_three_failures_of_one_kind_degrade_the_workflow_with_stricter_thresholds(
        scenario_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _policy(scenario_root, "[execution]\ndegraded_confidence_bonus = 0.5\n")
    # a RUNNING workflow: one failure of this kind, still RUNNING
    assert main(["run", "--no-wait", "--mode", "observe", "--workflow", "nightly", "--",
                 *FAIL]) == 1
    assert _state("nightly") is WorkflowState.RUNNING
    # Given two more failures of the same kind (3 consecutive)
    for _ in range(2):
        assert main(["run", "--no-wait", "--mode", "observe", "--workflow", "nightly", "--",
                     *FAIL]) == 1
    assert _state("nightly") is WorkflowState.DEGRADED
    assert "workflow nightly is now DEGRADED (3 consecutive" in capsys.readouterr().err
    before = tree_state(scenario_root)

    # When a SAFE tier-1 fix (score 1.0) comes along in auto-safe
    status, err = _heal_fix(capsys)

    # Then min_auto_confidence 0.7 + bonus 0.5 = 1.2 is in force: suggested, not applied
    assert status != 0 and tree_state(scenario_root) == before
    verdict = _last_verdict()
    assert verdict.decision == "suggest"
    assert "match confidence 1.00 is below 1.20" in verdict.reason
    assert "workflow nightly is degraded (3 consecutive" in verdict.reason
    # and strict validation: every built-in judge voted on a SAFE fix (1 when RUNNING)
    assert {v["judge"] for v in verdict.votes} == {"verification", "blast-radius", "history"}
    assert "is degraded" in err


def test_a_running_workflow_uses_one_judge_for_a_safe_fix(
        scenario_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _heal_fix(capsys)
    assert status == 0, err
    verdict = _last_verdict()
    assert verdict.decision == "apply"
    assert [v["judge"] for v in verdict.votes] == ["verification"]
    assert _state("nightly") is WorkflowState.RUNNING


def test_heal_workflow_env_names_the_workflow(
        scenario_root: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_WORKFLOW", "from-env")
    for _ in range(3):
        main(["run", "--no-wait", "--mode", "observe", "--", *FAIL])
    assert _state("from-env") is WorkflowState.DEGRADED
    # without a workflow id, the repository is the workflow
    monkeypatch.delenv("HEAL_WORKFLOW")
    main(["run", "--no-wait", "--mode", "observe", "--", *FAIL])
    assert _state(f"repo:{scenario_root}") is WorkflowState.RUNNING


def test_heal_run_with_a_workflow_id_over_1_kib_publishes_an_event_whose_workflow_is_held(
        scenario_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reviewer N3 (the same key, through `heal run`): `--workflow` over the contract's 1 KiB
    was published whole, so every stage refused the event, and the execution state was kept
    under the whole id, which no stage could look up."""
    from pipeline.guardrails.gate import gate_for
    from pipeline.policy import Policy

    workflow = "nightly-" + "w" * 2000
    # When ten `heal run` steps of that workflow fail within ten minutes
    for _ in range(10):
        assert main(["run", "--no-wait", "--mode", "observe", "--workflow", workflow, "--",
                     *FAIL]) == 1
    capsys.readouterr()
    # Then each event is one the stages accept, naming the workflow by its first 1 KiB
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.redis_url)
    (_, fields), = client.xrevrange(settings.stream("errors"), count=1)
    error = ErrorEvent.decode(fields[b"event"])
    assert workflow.startswith(error.workflow.id) and len(error.workflow.id) <= 1024
    # and the guardrail the validate and apply stages call with it holds the fixes back
    gate = gate_for(client, settings, error, Policy())
    assert gate.state is WorkflowState.QUARANTINED and not gate.auto_allowed, gate
