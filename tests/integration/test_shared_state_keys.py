"""A repository's heal.toml cannot decide state other repositories share (QA report qa_s14c,
D4 to D7): a workflow's execution state (keyed by the workflow's name, "CI" in many
repositories), the notification dedupe of a fingerprint, the daily verification budget and
the deferred-fix queue. On the real hooks, validate, apply and lifecycle stages, embedded
Redis and PostgreSQL, and the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from consumers.lifecycle import LifecycleHandler
from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo, git
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.guardrails.budget import Budget, deferred_key
from pipeline.guardrails.execution import WorkflowState
from pipeline.guardrails.gate import gate_for
from pipeline.policy import policy_for
from pipeline.validate.validator import Validator
from producers.hooks import WorkflowHooks
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate

WORKTREE = Path(__file__).resolve().parents[2]
FORMAT = ("ruff", "format", "--check", ".")


def _repo(tmp_path: Path, name: str, policy: str) -> Path:
    root = create_repo(tmp_path / name)
    (root / "heal.toml").write_text(policy)
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "policy")
    return root


def _heal_policy(repo: Path, home: Path) -> tuple[dict[str, Any], str]:
    """`heal policy --repo REPO --json` (this worktree's code) under the test's
    HEAL_CONFIG."""
    env = {**os.environ, "HEAL_HOME": str(home), "PYTHONPATH": str(WORKTREE)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "policy", "--repo", str(repo), "--json"],
        cwd=WORKTREE, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return {r["key"]: r for r in json.loads(run.stdout)["keys"]}, run.stderr


def test_a_repository_heal_toml_cannot_quarantine_a_workflow_name_other_repositories_share(
        tmp_path: Path, client: redis.Redis, redis_url: str, database_url: str, prefix: str,
        operator_toml: Callable[[str], Path]) -> None:
    # Given repository A whose heal.toml quarantines a workflow at its first failure (and
    # keeps it quarantined for 30 days), and repository B: both run a workflow called "CI"
    settings = Settings.from_env({"HEAL_HOME": str(tmp_path / "home"),
                                  "HEAL_REDIS_URL": redis_url,
                                  "HEAL_DATABASE_URL": database_url,
                                  "HEAL_STREAM_PREFIX": prefix})
    a = _repo(tmp_path, "wa", "[execution]\ndegrade_after = 1\nquarantine_failures = 1\n"
                              "quarantine_quiet_minutes = 43200\n")
    b = _repo(tmp_path, "wb", "")
    hooks = WorkflowHooks("CI", "r1", repo_path=str(a), client=client, settings=settings)
    # When one step of A's "CI" fails (the real hooks record it)
    hooks.on_subprocess_complete(["make", "t1"], 2, stderr="Error: something odd happened")
    # Then "CI" is not quarantined: the thresholds moving a workflow's state are the
    # operator's (here the defaults: 10 failures), never a repository's
    assert hooks.state is WorkflowState.RUNNING
    error_b = ErrorEvent(id=f"b-{uuid.uuid4().hex[:8]}", text="E501 line too long",
                         workflow=Workflow(id="CI", step="lint"),
                         repo=Repo(path=str(b), commit="c1"))
    gate = gate_for(client, settings, error_b, policy_for(b).current())
    assert gate.state is WorkflowState.RUNNING and gate.auto_allowed, gate.note()
    # ... and `heal policy` in A says so, naming each key and why
    rows, err = _heal_policy(a, settings.home)
    for key, value, asked in (("execution.quarantine_failures", 10, 1),
                              ("execution.degrade_after", 3, 1),
                              ("execution.quarantine_quiet_minutes", 60, 43200)):
        row = rows[key]
        assert (row["value"], row["source"], row["requested"]) == (value, "operator", asked)
        assert "only operator configuration may set it" in row["reason"], row
        assert f"heal: heal.toml: {key} = " in err, err

    # When the operator sets the same thresholds (hot reloaded), A's next failure quarantines
    # "CI", for every repository using that name: the operator's decision
    operator_toml("[execution]\ndegrade_after = 1\nquarantine_failures = 1\n")
    hooks.on_subprocess_complete(["make", "t2"], 2, stderr="Error: something odd happened")
    assert hooks.state.value == "QUARANTINED"
    gate = gate_for(client, settings, error_b, policy_for(b).current())
    assert not gate.auto_allowed


def _escalated(root: Path, fp: str) -> OutcomeEvent:
    error = ErrorEvent(id=f"{fp}-e", text="bash: ./run.sh: Permission denied",
                       workflow=Workflow(id=f"w-{fp}", step="s"),
                       repo=Repo(path=str(root), commit="c1"))
    return OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error, fine=fp,
                        fix_id="", status="escalated", detail="no safe mechanical fix")


def _dedupe_ttl(client: redis.Redis, settings: Settings, fp: str) -> int:
    ident = hashlib.sha256(f"{fp}|apply-escalated".encode()).hexdigest()[:16]
    return int(client.ttl(f"{settings.prefix}:escalation:{ident}"))


def test_a_repository_heal_toml_cannot_silence_the_escalations_of_an_error_for_a_year(
        tmp_path: Path, db: Database, client: redis.Redis, stage_settings: Settings,
        lifecycle_stage: Callable[[Settings], LifecycleHandler],
        operator_toml: Callable[[str], Path]) -> None:
    # Given repository A whose heal.toml asks for one notification per error and rule a year
    # (the dedupe key is per fingerprint and rule: every repository's escalations of that
    # error would be muted), and repository B that asks for half an hour
    a = _repo(tmp_path, "esca", "[escalation]\ndedupe_hours = 8760\n")
    b = _repo(tmp_path, "escb", "[escalation]\ndedupe_hours = 0.5\n")
    stage = lifecycle_stage(stage_settings)
    tag = uuid.uuid4().hex[:8]
    # When an escalated outcome in each goes through the lifecycle stage
    stage.handle(_escalated(a, f"fp-a-{tag}"))
    stage.handle(_escalated(b, f"fp-b-{tag}"))
    # Then A's notification is deduplicated for the default 24 hours at most, B's (fewer
    # hours: more notifications, never fewer) for its own half hour
    assert 0 < _dedupe_ttl(client, stage_settings, f"fp-a-{tag}") <= 24 * 3600
    assert 0 < _dedupe_ttl(client, stage_settings, f"fp-b-{tag}") <= 1800

    # When the operator sets dedupe_hours = 2 (hot reloaded)
    operator_toml("[escalation]\ndedupe_hours = 2\n")
    stage.handle(_escalated(a, f"fp-a2-{tag}"))
    # Then A gets the operator's 2 hours, not its year
    assert 0 < _dedupe_ttl(client, stage_settings, f"fp-a2-{tag}") <= 2 * 3600
    # ... and `heal policy` says so, naming the key and why
    rows, err = _heal_policy(a, stage_settings.home)
    row = rows["escalation.dedupe_hours"]
    assert (row["value"], row["source"], row["requested"]) == (2, "operator", 8760), row
    assert "looser than the operator's value" in row["reason"]
    assert "may only lower it" in row["reason"]
    assert "heal: heal.toml: escalation.dedupe_hours = 8760" in err, err


HANGS_IN_A_WORKTREE = """\
import os
import sys
import time

if "worktrees" in os.getcwd():
    time.sleep(40)
sys.exit(1)
"""

SLOW_TEST = """\
import os
import time
import unittest


class Slow(unittest.TestCase):
    def test_slow(self) -> None:
        if "worktrees" in os.getcwd():
            time.sleep(40)
"""


def _spent_minutes(client: redis.Redis, settings: Settings) -> float:
    return Budget(client, settings).spent().get("verification_minutes", 0.0)


def test_a_repository_check_timeout_cannot_spend_the_shared_verification_budget(
        tmp_path: Path, validator: Validator, client: redis.Redis, stage_settings: Settings,
        operator_toml: Callable[[str], Path]) -> None:
    # Given the operator's check timeout of 2 s, and a repository whose heal.toml asks for a
    # day, with a failing command that hangs when heal verifies it in a worktree
    operator_toml("[limits]\ncheck_timeout_s = 2\ndedupe_minutes = 0\n")
    root = create_repo(tmp_path / "slowa")
    break_formatting(root)
    (root / "check.py").write_text(HANGS_IN_A_WORKTREE)
    (root / "heal.toml").write_text((root / "heal.toml").read_text().replace(
        "[limits]\n", "[limits]\ncheck_timeout_s = 86400\n"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "slow check")
    started = time.monotonic()
    # When the validate stage verifies a fix of it
    verdict = validator.validate(candidate(root, (sys.executable, "check.py"), FORMAT_FIX))
    # Then each run of the failing command stopped at the operator's 2 s, not 40 s, and the
    # verification minutes every repository shares were spent accordingly
    assert time.monotonic() - started < 35, verdict.reason
    assert verdict.verification, verdict.reason  # (verified, not refused before)
    runs = {(r["phase"], r["name"]): r for r in verdict.verification}
    assert runs[("before", "failing-command")]["exit_code"] == 124, runs
    assert _spent_minutes(client, stage_settings) < 0.5


def test_a_repository_check_cannot_take_longer_than_the_operators_check_timeout(
        tmp_path: Path, validator: Validator, client: redis.Redis, stage_settings: Settings,
        operator_toml: Callable[[str], Path]) -> None:
    # Given the operator's check timeout of 2 s, and a repository check (its argv allowed by
    # the operator) whose heal.toml timeout_s is a day and whose test hangs in a worktree
    operator_toml("[limits]\ncheck_timeout_s = 2\ndedupe_minutes = 0\n")
    root = create_repo(tmp_path / "slowb")
    break_formatting(root)
    (root / "tests" / "test_slow.py").write_text(SLOW_TEST)
    (root / "heal.toml").write_text((root / "heal.toml").read_text().replace(
        "timeout_s = 60", "timeout_s = 86400"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "slow test")
    started = time.monotonic()
    # When the validate stage verifies a fix of it
    verdict = validator.validate(candidate(root, FORMAT, FORMAT_FIX))
    # Then the check stopped at the operator's 2 s, not 40 s
    assert time.monotonic() - started < 35, verdict.reason
    assert verdict.verification, verdict.reason  # (verified, not refused before)
    runs = {(r["phase"], r["name"]): r for r in verdict.verification}
    assert runs[("before", "tests")]["exit_code"] == 124, runs
    assert _spent_minutes(client, stage_settings) < 0.5
    # ... and `heal policy` shows the timeout in force and why
    rows, err = _heal_policy(root, stage_settings.home)
    (check,) = rows["verify.checks"]["value"]
    assert check["timeout_s"] == 2 and check["requested_timeout_s"] == 86400, check
    assert "longer than limits.check_timeout_s in force (2)" in check["reason"], check
    assert "verify.checks[0].timeout_s = 86400: longer than limits.check_timeout_s" in err, err


def test_a_repository_check_naming_no_timeout_runs_with_the_check_timeout_in_force(
        tmp_path: Path, operator_toml: Callable[[str], Path]) -> None:
    """A repository check without timeout_s took the default (120 s) when its file was read,
    before the operator's [limits] check_timeout_s was known: raised to 600 by the operator,
    the check still stopped at 120 s; lowered to 2, heal warned that the file's
    "timeout_s = 120" was too long although the file names none. It takes the value in
    force, as the validate stage (restrict) and `heal policy` both show."""
    from pipeline.trust.operator import load_operator, restrict

    root = create_repo(tmp_path / "notimeout")
    (root / "heal.toml").write_text((root / "heal.toml").read_text().replace(
        "timeout_s = 60\n", ""))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a check naming no timeout")
    home = tmp_path / "home"
    for in_force in (600, 2):
        operator_toml(f"[limits]\ncheck_timeout_s = {in_force}\n")
        settings = Settings.from_env({"HEAL_HOME": str(home),
                                      "HEAL_CONFIG": os.environ["HEAL_CONFIG"]})
        # the validate stage's reading (pipeline/validate/validator.py)
        policy, warnings, _ = restrict(policy_for(root).current(), load_operator(settings))
        mine = [c for c in policy.checks if c.name == "tests"]
        assert [c.timeout_s for c in mine] == [in_force], (in_force, mine)
        assert not [w for w in warnings if "timeout_s" in w], warnings
        # and heal policy's
        rows, err = _heal_policy(root, home)
        (check,) = rows["verify.checks"]["value"]
        assert check["timeout_s"] == in_force and "reason" not in check, check
        assert "timeout_s" not in err, err


def test_a_repository_heal_toml_cannot_retry_a_deferred_fix_every_tick(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, operator_toml: Callable[[str], Path]) -> None:
    # Given the operator's shared rate of 1 automatic fix per 2 minutes, and two repositories
    # whose heal.toml asks to retry a deferred fix after 0.1 s
    operator_toml("[budget]\nautomatic_fixes = 1\nautomatic_fixes_minutes = 2\n")
    policy = "[budget]\ndeferred_retry_seconds = 0.1\n"
    roots = [_repo(tmp_path, f"defer{i}", policy) for i in range(2)]
    for root in roots:
        break_formatting(root)
    verdicts = [validator.validate(candidate(root, FORMAT, FORMAT_FIX)) for root in roots]
    assert [v.decision for v in verdicts] == ["apply"] * 2
    # When the apply stage handles both: the second is deferred
    outcomes = [applier.handle(v) for v in verdicts]
    assert [o.status for o in outcomes] == ["applied", "deferred"]
    # Then it is retried after the default 30 s (a repository may only make it wait longer),
    # not at the next tick
    assert "retried automatically in 30s" in outcomes[1].detail, outcomes[1].detail
    assert applier.release_deferred(now=time.time() + 1) == 0
    queued: list[Any] = list(client.zrange(deferred_key(stage_settings), 0, -1,
                                           withscores=True))
    due = [float(entry[1]) for entry in queued]
    assert len(due) == 1 and time.time() + 25 < due[0] < time.time() + 31, due
