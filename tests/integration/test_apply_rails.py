"""The breaker and the quarantine hold fixes already decided (real git, Redis, PostgreSQL).

Every verdict of a batch is decided before the first one is applied (``drain_inline`` runs
the stages in order), and a deferred verdict waits: the apply stage reads the breaker and the
fix's quarantine again right before an automatic application (QA report qa_life, item 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo, git
from pipeline.events import CandidateEvent, VerdictEvent, Workflow
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate

FORMAT = ("ruff", "format", "--check", ".")


@pytest.fixture(autouse=True)
def _dedupe_off(operator_toml: Callable[[str], Path]) -> None:
    """Dedupe off (the same fix is decided again at the same commit): the operator's to
    allow, a repository's heal.toml may only tighten it."""
    operator_toml("[limits]\ndedupe_minutes = 0\n")


def _repo(tmp_path: Path, policy: str = "[limits]\ndedupe_minutes = 0\n",
          name: str = "shop") -> Path:
    root = create_repo(tmp_path / name)
    (root / "heal.toml").write_text(policy)
    git(root, "add", "heal.toml")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "policy")
    break_formatting(root)
    return root


def _in_step(cand: CandidateEvent, fine: str) -> CandidateEvent:
    """The candidate as one more failure of step ``s`` of workflow ``w`` (fingerprint
    ``fine``): the workflow is not part of the operator's attestation."""
    error = replace(cand.error, workflow=Workflow(id="w", step="s"))
    return replace(cand, error=error, fine=fine)


def _decided(validator: Validator, root: Path, fines: list[str]) -> list[VerdictEvent]:
    verdicts = [validator.validate(_in_step(candidate(root, FORMAT, FORMAT_FIX), fine))
                for fine in fines]
    assert [v.decision for v in verdicts] == ["apply"] * len(fines), [
        v.reason for v in verdicts]
    return verdicts


def test_verdicts_decided_before_a_rollback_are_not_applied_after_it(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, attempt_store: AttemptStore) -> None:
    # Given a SAFE fix that verifies in a clean worktree but leaves the user's tree failing
    # (a file only the user has), and four verdicts of one step all decided `apply` before
    # any is applied: two of one fingerprint, two of others
    root = _repo(tmp_path)
    fp = f"fp-v4:{time.time_ns() % 10**16:016d}"
    verdicts = _decided(validator, root, [fp, fp, f"{fp}-b", f"{fp}-c"])
    (root / "shop/local_only.py").write_text("x=1\n")
    start = git(root, "rev-parse", "HEAD")

    outcomes = [applier.handle(v) for v in verdicts]

    # Then the first is applied and reverted (one revert: the step's breaker stays closed)
    assert outcomes[0].status == "rolled_back", outcomes[0].detail
    # the second, of the same fingerprint, is held by the quarantine that rollback caused
    assert outcomes[1].status == "escalated", outcomes[1].detail
    assert "is quarantined (rolled back for error" in outcomes[1].detail
    assert f"heal unquarantine {fp}" in outcomes[1].detail
    # the third (another fingerprint) is applied and reverted: the second revert trips the
    # step's breaker, so the fourth is not applied and says why
    assert outcomes[2].status == "rolled_back", outcomes[2].detail
    assert outcomes[3].status == "suggested", outcomes[3].detail
    assert "breaker OPEN at step:w/s" in outcomes[3].detail
    assert "the breaker opened after this fix was decided" in outcomes[3].detail
    assert f"heal apply {verdicts[3].error_id} --force" in outcomes[3].detail
    # two fixes and their two reverts, nothing else reached the branch
    assert len(git(root, "log", "--format=%s", f"{start}..HEAD").splitlines()) == 4
    assert attempt_store.apply_result(verdicts[3].error_id)["status"] == "suggested"
    # the held suggestion waits for a person (heal apply ERROR_ID finds it)
    assert [r["id"] for r in attempt_store.pending_suggestions(verdicts[3].error_id)] == [
        verdicts[3].error_id]


def test_a_deferred_verdict_is_not_applied_once_the_breaker_opened(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings, operator_toml: Callable[[str], Path]) -> None:
    # Given the operator's rate of 1 automatic fix per 2 minutes, shared by every repository:
    # of two verdicts of step w/s (in two checkouts) the second is deferred
    # (a deferred fix retried after 0.1 s: the operator's, a repository may only raise it)
    operator_toml("[limits]\ndedupe_minutes = 0\n[budget]\nautomatic_fixes = 1\n"
                  "automatic_fixes_minutes = 2\ndeferred_retry_seconds = 0.1\n")
    policy = "[limits]\ndedupe_minutes = 0\n"
    (first,) = _decided(validator, _repo(tmp_path, policy, "one"), ["fp-def-a"])
    root = _repo(tmp_path, policy, "two")
    (second,) = _decided(validator, root, ["fp-def-b"])
    assert applier.handle(first).status == "applied"
    assert applier.handle(second).status == "deferred"
    head = git(root, "rev-parse", "HEAD")
    # When a person opens the breaker of the step while it waits, and the bucket refills
    CircuitBreaker(client, stage_settings).force_open("step:w/s", "incident 42")
    bucket = stage_settings.key("budget", "bucket", "apply")
    client.hset(bucket, "ts", float(client.hget(bucket, "ts") or 0) - 120)
    assert applier.release_deferred(now=time.time() + 1) == 1
    (_, fields), = client.xrevrange(stage_settings.stream("verdicts"), count=1)
    again = applier.handle(VerdictEvent.decode(fields[b"event"]))
    # Then the released verdict is not applied: it waits for a person, saying why
    assert again.status == "suggested", again.detail
    assert "breaker FORCED_OPEN at step:w/s (incident 42)" in again.detail
    assert git(root, "rev-parse", "HEAD") == head


def test_reverts_in_one_checkout_do_not_open_the_breaker_of_a_same_named_step_in_another(
        tmp_path: Path, validator: Validator, applier: Applier, client: redis.Redis,
        stage_settings: Settings) -> None:
    # Given two checkouts whose steps are both called `ci`, run without --workflow (the
    # default heal run: QA report qa_life, item 4)
    def plain(root: Path, fine: str) -> CandidateEvent:
        cand = candidate(root, FORMAT, FORMAT_FIX)
        return replace(cand, fine=fine, error=replace(cand.error,
                                                      workflow=Workflow(id="", step="ci")))

    one = _repo(tmp_path, name="one")
    two = _repo(tmp_path, name="two")
    verdicts = [validator.validate(plain(one, f"fp-one-{i}")) for i in range(2)]
    (one / "shop/local_only.py").write_text("x=1\n")
    # When two fixes are reverted in the first checkout
    assert [applier.handle(v).status for v in verdicts] == ["rolled_back", "rolled_back"]
    scopes = CircuitBreaker(client, stage_settings).status()["scopes"]
    assert scopes[f"step:repo:{one}/ci"]["state"] == "OPEN", scopes
    assert scopes[f"workflow:repo:{one}"]["state"] == "OPEN", scopes
    assert "step:ci" not in scopes
    # Then the second checkout's step `ci` is still fixed automatically
    verdict = validator.validate(plain(two, "fp-two"))
    assert verdict.decision == "apply", verdict.reason
    assert applier.handle(verdict).status == "applied"
    # and the first checkout's is refused by the pre-flight, naming its own scope
    refused = validator.validate(plain(one, "fp-one-2"))
    assert refused.decision == "reject" and f"step:repo:{one}/ci" in refused.reason
