"""Escalation and the breaker end to end through the validate, apply and lifecycle stages on
the real embedded Redis and PostgreSQL (real git): RISKY suggestions and failed attempts
notify by the repository's [escalation] rules, the lifecycle timer sweeps time-based rules
under a Redis lease, and 2 reverts in an hour open the breaker (notified), refuse the next
automatic fix, then let one half-open probe through that closes it again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

import consumers.lifecycle as lifecycle_stage
from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, break_stale_lock, git
from pipeline.events import CandidateEvent, Workflow
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.lifecycle.sweeper import Sweeper
from pipeline.stage import StageContext
from pipeline.validate.validator import Validator
from storage.db import Database
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, lock_fix, sample_repo

RISKY_FIX = {"id": "python.rewrite_parser", "pattern_id": "python.parser_bug", "kind": "command",
             "category": "RISKY", "state": "ACTIVE", "title": "Rewrite the parser",
             "rendered": {"argv": ["true"], "timeout_s": 10}}

POLICY = """
[[escalation.rules]]
name = "parser-pager"
when = "immediate"
patterns = ["python.parser_*"]
categories = ["RISKY"]
severity = "critical"
action = "page the parser owner"

[[escalation.rules]]
name = "lock-unfixed-2h"
when = "unresolved"
after_hours = 2
patterns = ["git.*"]
severity = "critical"
"""


@pytest.fixture
def lifecycle(stage_settings: Settings, client: redis.Redis, db: Database
              ) -> Iterator[lifecycle_stage.LifecycleHandler]:
    handler = lifecycle_stage.build(StageContext(stage_settings, "lifecycle",
                                                 resources={"db": db, "redis": client}))
    yield handler
    assert handler.sweeper is not None
    handler.sweeper.stop()


def notes(settings: Settings) -> list[dict[str, Any]]:
    path = settings.home / "notifications.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def with_policy(root: Path) -> None:
    (root / "heal.toml").write_text(POLICY)
    git(root, "add", "heal.toml")
    git(root, "commit", "-q", "-m", "heal policy")


def test_risky_suggestion_and_failed_attempt_notify_by_the_repository_rules(
        tmp_path: Path, validator: Validator, applier: Applier, db: Database,
        lifecycle: lifecycle_stage.LifecycleHandler, stage_settings: Settings,
        client: redis.Redis) -> None:
    root = sample_repo(tmp_path)
    with_policy(root)
    break_formatting(root)
    # Given a RISKY fix for a parser pattern the policy pages for
    cand = candidate(root, ("ruff", "format", "--check", "."), RISKY_FIX, mode="auto")
    verdict = validator.validate(cand)
    assert verdict.decision == "suggest", verdict.reason
    # When it goes through apply and lifecycle
    outcome = applier.handle(verdict)
    assert outcome.status == "suggested"
    lifecycle.handle(outcome)
    # Then a person is notified at once, by the repository's own rule, with its severity
    risky = [n for n in notes(stage_settings) if n["fingerprint"] == cand.fine]
    assert [(n["rule"], n["severity"]) for n in risky] == [("parser-pager", "critical")]
    assert risky[0]["suggested_action"] == "page the parser owner"

    # Given a playbook whose every step fails (a failed attempt, escalated)
    break_stale_lock(root)
    lock = root / ".git/index.lock"
    fix = lock_fix(lock)
    fix["rendered"]["steps"]["primary"] = [{"name": "wrong tool", "argv": ["false"],
                                            "timeout_s": 5}]
    cand = candidate(root, ("git", "add", "notes.txt"), fix, params={"lock_path": str(lock)})
    failed = applier.apply_suggested(replace(validator.validate(cand), decision="apply"))
    assert failed.status == "escalated", failed.detail
    lifecycle.handle(failed)
    # Then the notification counts that attempt (it used to say "attempts": 0)
    (note,) = [n for n in notes(stage_settings) if n["fingerprint"] == cand.fine]
    assert note["rule"] == "apply-escalated" and note["attempts"] == 1, note
    assert note["actions_tried"] == ["git.index_lock"]

    # When the error stays unfixed past the repository's 2-hour rule, the timer notifies
    db.execute("UPDATE lifecycle_outcomes SET ts = ts - interval '3 hours'"
               " WHERE fingerprint = $1", cand.fine)
    sweeper = lifecycle.sweeper
    assert sweeper is not None
    client.delete(sweeper.lease_key)  # the sweep at start-up holds it for this interval
    other = Sweeper(client, sweeper.lease_key, [lambda: None], interval_s=60)
    assert sweeper.run_once() is True
    assert other.run_once() is False  # one worker holds the lease: the others skip
    timed = [n for n in notes(stage_settings)
             if n["fingerprint"] == cand.fine and n["rule"] == "lock-unfixed-2h"]
    assert len(timed) == 1 and timed[0]["severity"] == "critical"
    client.delete(sweeper.lease_key)
    sweeper.run_once()  # deduplicated: no second notification for the same rule
    assert len([n for n in notes(stage_settings) if n["rule"] == "lock-unfixed-2h"
                and n["fingerprint"] == cand.fine]) == 1


def _in_workflow(cand: CandidateEvent, workflow: str) -> CandidateEvent:
    error = replace(cand.error, workflow=Workflow(id=workflow, step="fmt"))
    return replace(cand, error=error)


def test_two_reverts_open_the_breaker_then_a_half_open_probe_closes_it(
        tmp_path: Path, validator: Validator, applier: Applier,
        lifecycle: lifecycle_stage.LifecycleHandler, stage_settings: Settings,
        client: redis.Redis) -> None:
    root = sample_repo(tmp_path)
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    local_only = root / "shop/local_only.py"
    break_formatting(root)  # (a revert brings the breakage back for the next attempt)

    def attempt(still_failing: bool) -> str:
        local_only.unlink(missing_ok=True)
        cand = _in_workflow(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX),
                            workflow)
        verdict = validator.validate(cand)
        if still_failing:  # the user's tree holds a file the verified worktree did not
            local_only.write_text("x=1\n")
        outcome = applier.handle(verdict)
        lifecycle.handle(outcome)
        return outcome.status

    # Given two fixes that were reverted within the hour in one workflow step
    assert attempt(still_failing=True) == "rolled_back"
    assert attempt(still_failing=True) == "rolled_back"
    breaker = CircuitBreaker(client, stage_settings)
    step = f"step:{workflow}/fmt"
    assert breaker.scope_status(step)["state"] == "OPEN"
    # Then the trip notified a person, with its reason
    trips = [n for n in notes(stage_settings) if n["kind"] == "breaker"]
    assert {n["severity"] for n in trips} == {"critical"}
    assert any(step in n["summary"] and "2 revert(s)" in n["summary"] for n in trips), trips

    # When the next SAFE fix comes during the cooldown, Then nothing is applied
    head = git(root, "rev-parse", "HEAD")
    assert attempt(still_failing=False) == "escalated"
    assert git(root, "rev-parse", "HEAD") == head
    assert breaker.scope_status(step)["state"] == "OPEN"

    # When the cooldown has passed (the trip moved back in time), one probe is let through
    for scope in (step, f"workflow:{workflow}"):
        key = stage_settings.key("{breaker}", scope) + ":state"
        opened = float(client.hget(key, "opened_at") or 0)
        client.hset(key, "opened_at", opened - breaker.config.cooldown_s - 1)
    assert attempt(still_failing=False) == "applied"
    # Then the probe's success closes the breaker again
    assert breaker.scope_status(step)["state"] == "CLOSED"
    assert breaker.scope_status(f"workflow:{workflow}")["state"] == "CLOSED"
