"""The apply stage's decisions, called directly on the real Redis and PostgreSQL with real git
repositories: what each verdict becomes (status and the detail a person reads), the marker that
keeps one error from being applied twice, refusals that leave the repository as it was, and the
breaker's record of a fix that did not hold."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.apply.applier import DEFERRED_ROLE, Applier
from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.errors import Retry
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, VerdictEvent, Workflow
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.guardrails.budget import deferred_key
from pipeline.trust.attest import attest
from pipeline.trust.seal import unseal
from storage.attempts import AttemptStore


def _error(root: Path | None, command: tuple[str, ...] = ("false",), signed: bool = True,
           cwd: Path | None = None) -> ErrorEvent:
    eid = f"mut-{uuid.uuid4().hex[:10]}"
    where = str(cwd or root) if root else ""
    err = ErrorEvent(id=eid, text="boom", command=command, exit_code=1,
                     repo=Repo(path=str(root) if root else "",
                               commit=git(root, "rev-parse", "HEAD") if root else "",
                               branch="main"),
                     workflow=Workflow(id=f"wf-{eid}", step="build"),
                     tags={"cwd": where} if where else {})
    return attest(err, Settings.from_env()) if signed else err


def _verdict(error: ErrorEvent, decision: str, fix: dict[str, Any] | None = None,
             **kw: Any) -> VerdictEvent:
    return VerdictEvent(id=f"{error.id}:validate", error_id=error.id, error=error,
                        fine=f"fp-{error.id}", fix=fix, decision=decision, **kw)


def _playbook(steps: dict[str, Any], fix_id: str = "pb.one", **extra: Any) -> dict[str, Any]:
    return {"id": fix_id, "kind": "playbook", "category": "MODERATE",
            "rendered": {"steps": steps}, **extra}


def _touch(path: Path) -> dict[str, Any]:
    return {"name": f"touch {path.name}", "argv": ["touch", str(path)], "timeout_s": 10}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return create_repo(tmp_path / "shop")


def _reverts(client: redis.Redis, settings: Settings, error: ErrorEvent) -> int:
    scopes = CircuitBreaker(client, settings).status()["scopes"]
    scope = scopes.get(f"step:{error.workflow.id}/{error.workflow.step}") or {}
    return int(scope.get("reverts_in_window", 0))


# -- decisions that change nothing ---------------------------------------------------------

def test_observe_escalate_and_an_unknown_decision_pass_the_reason_through(
        repo: Path, applier: Applier, attempt_store: AttemptStore) -> None:
    for decision, status, detail in [("observe", "observed", "why: observe"),
                                     ("escalate", "escalated", "why: escalate"),
                                     ("later", "skipped", "unknown decision 'later'")]:
        error = _error(repo)
        out = applier.handle(_verdict(error, decision, {"id": "f.x"}, reason=f"why: {decision}",
                                      branch="heal/b", commit="abc"))
        assert (out.status, out.detail, out.fix_id) == (status, detail, "f.x")
        assert (out.id, out.error_id, out.fine) == (f"{error.id}:apply", error.id,
                                                     f"fp-{error.id}")
        assert (out.branch, out.commit) == ("heal/b", "abc")
        row = attempt_store.apply_result(error.id)
        assert row is not None and row["status"] == status and row["detail"] == detail
        assert row["fix_id"] == "f.x"


def test_a_rejected_fix_says_why_by_what_verification_saw(repo: Path, applier: Applier) -> None:
    def outcome(reason: str, runs: list[dict[str, Any]]) -> OutcomeEvent:
        return applier.handle(_verdict(_error(repo), "reject", {"id": "f.r"}, reason=reason,
                                       verification=runs))

    flaky = outcome("did not reproduce", [
        {"phase": "before", "name": "failing-command", "exit_code": 0}])
    assert (flaky.status, flaky.detail) == (
        "flaky", "flaky: the failing command passed in a clean worktree without any fix; no "
                 "fix applied or credited (a re-run is the remedy)")
    failed = outcome("tests broke", [
        {"phase": "before", "name": "failing-command", "exit_code": 1},
        {"phase": "after", "name": "failing-command", "exit_code": 1}])
    assert (failed.status, failed.detail) == (
        "failed", "did not survive verification, rolled back (heal branch discarded): "
                  "tests broke")
    broken = outcome("missing tool", [{"phase": "fix", "name": "fix", "exit_code": 127,
                                       "tail": "x" * 300 + " cannot run: no such file  "}])
    assert broken.status == "failed"
    tail = ("x" * 300 + " cannot run: no such file  ")[-200:].strip()
    assert broken.detail == f"the fix cannot run (exit 127: {tail}): missing tool"
    same = outcome("an identical request failed before", [])
    assert (same.status, same.detail) == ("skipped", "an identical request failed before")
    other = outcome("judges said no", [{"phase": "fix", "name": "fix", "exit_code": 2}])
    assert (other.status, other.detail) == ("escalated", "judges said no")


def test_a_suggestion_says_whether_it_was_verified_and_how_to_apply_it(
        repo: Path, applier: Applier) -> None:
    error = _error(repo)
    verified = applier.handle(_verdict(error, "suggest", {"id": "f.s"}, branch="heal/x",
                                       verification=[{"phase": "after", "exit_code": 0}]))
    # the error id: `heal apply f.s` is refused once several suggestions of f.s wait
    assert (verified.status, verified.detail) == (
        "suggested", f"verified on branch heal/x; apply with: heal apply {error.id}")
    other = _error(repo)
    plain = applier.handle(_verdict(other, "suggest", {"id": "f.s"},
                                    verification=[{"phase": "before", "exit_code": 1}]))
    assert plain.detail == ("not verified yet (checked step by step when applied); "
                            f"apply with: heal apply {other.id}")
    third = _error(repo)
    held = applier.handle(_verdict(
        third, "suggest", {"id": "f.s"}, verification=[{"phase": "after"}],
        reason=f"not applied automatically: quarantined; run `heal apply {third.id}` to apply"))
    assert held.detail == ("not applied automatically: quarantined; verified; "
                           f"apply with: heal apply {third.id}")


# -- the marker that keeps one error from being applied twice ------------------------------

def test_an_error_another_worker_is_applying_is_retried_later_and_left_claimed(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    error = _error(repo)
    key = stage_settings.key("apply", "done", error.id)
    client.set(key, b"in-progress")
    with pytest.raises(Retry) as retry:
        applier.handle(_verdict(error, "observe", reason="r"))
    assert retry.value.delay == 5.0  # a marker with no expiry (set by hand): looked at again
    assert not retry.value.counted  # waiting for a live holder is not the event's failure
    assert client.get(key) == b"in-progress"  # the other worker still holds it


def test_a_done_marker_returns_the_first_outcome_and_an_unreadable_one_is_decided_again(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    error = _error(repo)
    verdict = _verdict(error, "observe", reason="first")
    first = applier.handle(verdict)
    assert applier.handle(_verdict(error, "escalate", reason="second")) == first
    key = stage_settings.key("apply", "done", error.id)
    assert OutcomeEvent.decode(client.get(key)) == first  # type: ignore[arg-type]
    ttl = client.ttl(key)
    assert 29 * 24 * 3600 < ttl <= 30 * 24 * 3600  # kept for 30 days
    client.set(key, b"not an outcome")
    again = applier.handle(_verdict(error, "escalate", reason="second"))
    assert again.status == "escalated" and again.detail == "second"


def test_a_claim_is_short_lived_and_released_when_the_stage_fails(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    error = _error(repo)
    key = stage_settings.key("apply", "done", error.id)
    seen: list[int] = []

    def boom(verdict: VerdictEvent) -> Any:
        seen.append(client.pttl(key))
        assert (client.get(key) or b"").startswith(b"in-progress:")  # names its holder
        raise RuntimeError("stage broke")

    monkeypatch.setattr(applier, "_outcome", boom)
    with pytest.raises(RuntimeError):
        applier.handle(_verdict(error, "observe", reason="r"))
    # a lease of exactly 30 s that its holder refreshes: it lapses soon after it dies, never
    # under a live worker that reaches Redis (README: "30 s long and refreshed every 10 s")
    assert 29_000 < seen[0] <= 30_000, seen
    assert client.get(key) is None  # a retry may claim it again


# -- refusals that leave the repository as it was -------------------------------------------

def test_an_error_outside_any_repository_or_unregistered_is_not_applied(
        tmp_path: Path, repo: Path, applier: Applier) -> None:
    head = git(repo, "rev-parse", "HEAD")
    marker = tmp_path / "ran"
    fix = _playbook({"primary": [_touch(marker)]})
    nowhere = tmp_path / "plain"
    nowhere.mkdir()
    err = ErrorEvent(id=f"mut-{uuid.uuid4().hex[:8]}", text="x", command=("false",),
                     exit_code=1, repo=Repo(path=str(nowhere)), workflow=Workflow(id="w", step="s"),
                     tags={"cwd": str(nowhere)})
    out = applier.handle(_verdict(err, "apply", fix))
    assert (out.status, out.detail) == ("escalated", "no git repository to apply to")
    stranger = applier.handle(_verdict(_error(repo, signed=False), "apply", fix))
    assert stranger.status == "escalated"
    assert stranger.detail.startswith(f"not applied: repository {repo} is not registered")
    assert not marker.exists() and git(repo, "rev-parse", "HEAD") == head


def test_a_used_up_daily_budget_leaves_the_fix_suggested(
        repo: Path, applier: Applier, stage_settings: Settings, client: redis.Redis) -> None:
    (repo / "heal.toml").write_text("[budget]\nfix_applications = 1\n")
    marker = repo / "ran"
    first = applier.apply_suggested(_verdict(_error(repo, command=()), "apply", _playbook(
        {"primary": [_touch(marker)]}, "pb.first")))
    assert first.status == "applied", first.detail
    marker.unlink()
    second = _error(repo, command=())
    out = applier.apply_suggested(_verdict(second, "apply", _playbook(
        {"primary": [_touch(marker)]}, "pb.second")))
    assert (out.status, out.detail) == (
        "suggested", "daily budget for fix applications used up (1); apply later with: "
                     f"heal apply {second.id}")
    assert not marker.exists()


def test_a_step_naming_a_path_outside_the_repository_runs_nothing(
        tmp_path: Path, repo: Path, applier: Applier) -> None:
    outside = tmp_path / "victim"
    outside.write_text("keep")
    fix = _playbook({"primary": [{"name": "rm", "argv": ["rm", "-f", str(outside)]}]})
    out = applier.apply_suggested(_verdict(_error(repo), "apply", fix))
    assert out.status == "escalated" and out.detail.startswith("nothing applied: ")
    assert outside.read_text() == "keep"
    hostile = applier.apply_suggested(_verdict(
        _error(repo), "apply", _playbook({"primary": [_touch(repo / "ok")]}),
        params={"path": "../../etc/passwd"}))
    assert hostile.status == "escalated" and hostile.detail.startswith("nothing applied: ")
    assert not (repo / "ok").exists()


# -- commands and playbooks step by step ----------------------------------------------------

def test_a_command_fix_runs_at_the_root_and_the_failing_step_is_rerun_where_it_failed(
        repo: Path, applier: Applier, attempt_store: AttemptStore) -> None:
    sub = repo / "sub"
    sub.mkdir()
    flag = sub / "fixed"
    error = _error(repo, command=("test", "-f", "fixed"), cwd=sub)
    fix = {"id": "cmd.touch", "kind": "command", "category": "SAFE",
           "rendered": {"argv": ["touch", "sub/fixed"]}}
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert flag.exists() and out.status == "applied"
    # (no validation steps: nothing but the re-run says it worked)
    assert out.detail == "primary steps done; failing step passes again"
    assert out.fix_id == "cmd.touch" and out.duration_s > 0
    row = attempt_store.apply_result(error.id)
    assert row is not None and row["status"] == "applied"
    names = [s["name"] for s in row["steps"]]
    assert names == ["fix", "re-run failing step"]


def test_a_playbook_can_rerun_the_trusted_failing_command_as_a_step(
        repo: Path, applier: Applier) -> None:
    flag = repo / "fixed"
    error = _error(repo, command=("test", "-f", str(flag)))
    fix = _playbook({"primary": [_touch(flag)], "validate": [{"action": "rerun"}]})
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "applied", out.detail
    assert out.detail == "primary steps done and validated; failing step passes again"


def test_a_fix_that_runs_but_leaves_the_step_failing_is_escalated_and_counted(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    error = _error(repo, command=("sh", "-c", "exit 3"))
    fix = _playbook({"primary": [_touch(repo / "a")]})
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "escalated"
    assert out.detail == ("pb.one failed: primary steps done, but the failing step still "
                          "fails (exit 3); escalated; the fix's steps left a in the working "
                          "tree (uncommitted, not removed: review or delete)")
    assert out.failed_fixes == []
    assert _reverts(client, stage_settings, error) == 1


def test_an_untrusted_command_is_not_rerun_and_the_outcome_says_so(
        repo: Path, applier: Applier) -> None:
    fix = _playbook({"primary": [_touch(repo / "a")]})
    out = applier.apply_suggested(_verdict(_error(repo, command=()), "apply", fix))
    assert (out.status, out.detail) == ("applied",
                                        "primary steps done; no command to re-run")


def test_the_ranked_fallback_runs_when_the_first_fails_and_is_credited(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    flag = repo / "fixed"
    error = _error(repo, command=("test", "-f", str(flag)))
    alt = _playbook({"primary": [_touch(flag)]}, "pb.alt", category="SAFE")
    fix = _playbook({"primary": [{"name": "nope", "argv": ["false"]}]}, "pb.first",
                    alternatives=[alt])
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "applied" and out.fix_id == "pb.alt"
    assert out.failed_fixes == ["pb.first"]
    assert out.detail == ("pb.first failed: every step failed or did not validate (nope: "
                          "exit 1); escalated; fallback pb.alt (ranked next): primary steps "
                          "done; failing step passes again")
    assert _reverts(client, stage_settings, error) == 0


def test_when_every_fix_fails_the_alternatives_are_named_and_the_breaker_counts_it(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings,
        attempt_store: AttemptStore) -> None:
    error = _error(repo, command=("false",))
    alt = _playbook({"primary": [{"name": "alt step", "argv": ["false"]}]}, "pb.alt")
    fix = _playbook({"primary": [{"name": "first step", "argv": ["false"]}]}, "pb.first",
                    alternatives=[alt])
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "escalated" and out.fix_id == "pb.first"
    assert out.failed_fixes == ["pb.alt"]
    assert out.detail == ("pb.first failed: every step failed or did not validate (first "
                          "step: exit 1); escalated; pb.alt failed: every step failed or did "
                          "not validate (alt step: exit 1); escalated")
    assert _reverts(client, stage_settings, error) == 1
    row = attempt_store.apply_result(error.id)
    assert row is not None and [s["name"] for s in row["steps"]] == ["first step", "alt step"]


def test_a_fix_whose_command_is_missing_is_a_failed_attempt(
        repo: Path, applier: Applier, attempt_store: AttemptStore) -> None:
    error = _error(repo, command=("false",))
    alt = _playbook({"primary": [{"name": "alt", "argv": ["false"]}]}, "pb.alt")
    fix = {"id": "cmd.gone", "kind": "command", "category": "SAFE", "alternatives": [alt],
           "rendered": {"argv": ["heal-no-such-tool-xyz"]}}
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "failed", out.detail
    assert out.detail.startswith("the fix cannot run (step fix exit 127: cannot run: ")
    assert out.detail.endswith("; pb.alt failed: every step failed or did not validate "
                               "(alt: exit 1); escalated")
    assert out.failed_fixes == ["pb.alt"]
    row = attempt_store.apply_result(error.id)  # both attempts' steps are kept for explain
    assert row is not None and [s["name"] for s in row["steps"]] == ["fix", "alt"]


def test_a_fallback_past_the_daily_budget_is_not_tried(repo: Path, applier: Applier) -> None:
    (repo / "heal.toml").write_text("[budget]\nfix_applications = 1\n")
    flag = repo / "fixed"
    alt = _playbook({"primary": [_touch(flag)]}, "pb.alt")
    fix = _playbook({"primary": [{"name": "s", "argv": ["false"]}]}, "pb.first",
                    alternatives=[alt])
    out = applier.apply_suggested(_verdict(_error(repo), "apply", fix))
    assert out.status == "escalated" and not flag.exists()
    assert out.detail.endswith("; fallback pb.alt not tried: daily budget for fix "
                               "applications used up (1)")


def test_an_alternative_naming_a_path_outside_is_not_tried(
        tmp_path: Path, repo: Path, applier: Applier) -> None:
    outside = tmp_path / "victim"
    outside.write_text("keep")
    alt = _playbook({"primary": [{"name": "rm", "argv": ["rm", "-f", str(outside)]}]}, "pb.alt")
    fix = _playbook({"primary": [{"name": "s", "argv": ["false"]}]}, "pb.first",
                    alternatives=[alt])
    out = applier.apply_suggested(_verdict(_error(repo), "apply", fix))
    assert out.status == "escalated" and outside.read_text() == "keep"
    assert "; pb.alt not tried: nothing applied: " in out.detail


# -- a package install's manifest diff --------------------------------------------------------

def test_an_approved_install_declares_the_dependency_uncommitted(
        repo: Path, applier: Applier) -> None:
    (repo / "requirements.txt").write_text("requests\n")
    git(repo, "add", "requirements.txt")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "reqs")
    diff = ("--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1 +1,2 @@\n requests\n"
            "+rich\n")
    fix = {"id": "pkg.rich", "kind": "command", "category": "RISKY",
           "rendered": {"argv": ["true"], "manifest_diff": diff}}
    out = applier.apply_suggested(_verdict(_error(repo, command=()), "apply", fix))
    assert out.status == "applied", out.detail
    assert out.detail.endswith("; requirements.txt now declares it (uncommitted: review and "
                               "commit it)")
    assert (repo / "requirements.txt").read_text() == "requests\nrich\n"
    assert git(repo, "status", "--porcelain").strip() == "M requirements.txt"
    bad = {**fix, "rendered": {"argv": ["true"], "manifest_diff": diff.replace(
        " requests", " flask")}}
    out = applier.apply_suggested(_verdict(_error(repo, command=()), "apply", bad))
    assert out.status == "applied"
    assert "; the manifest diff did not apply (" in out.detail
    assert out.detail.endswith("): add the dependency by hand")


# -- automatic applications: execution state and rate ---------------------------------------

def test_an_automatic_fix_in_a_quarantined_workflow_is_only_suggested(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    flag = repo / "fixed"
    error = _error(repo, command=())
    base = stage_settings.key("{execution}", error.workflow.id)
    client.hset(f"{base}:state", mapping={"state": "QUARANTINED", "reason": "3 reverts",
                                          "last_failure_at": time.time(), "since": 0})
    out = applier.handle(_verdict(error, "apply", _playbook({"primary": [_touch(flag)]})))
    assert out.status == "suggested" and not flag.exists()
    assert out.detail == (f"workflow {error.workflow.id} is quarantined (3 reverts, since "
                          f"unknown, how to lift: `heal unquarantine --workflow "
                          f"{error.workflow.id}`): nothing is applied automatically; apply "
                          f"with: heal apply {error.id}")
    # a person's `heal apply` is not held by the quarantine
    assert applier.apply_suggested(_verdict(error, "apply", _playbook(
        {"primary": [_touch(flag)]}))).status == "applied"


def test_an_automatic_fix_past_the_rate_is_deferred_audited_and_left_unclaimed(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    (repo / "heal.toml").write_text("[budget]\nautomatic_fixes = 1\nautomatic_fixes_minutes = 3"
                                    "\ndeferred_retry_seconds = 40\n")
    first = _error(repo, command=())
    assert applier.handle(_verdict(first, "apply", _playbook(
        {"primary": [_touch(repo / "one")]}))).status == "applied"
    error = _error(repo, command=())
    before = time.time()
    out = applier.handle(_verdict(error, "apply", _playbook(
        {"primary": [_touch(repo / "two")]}, "pb.two")))
    assert out.status == "deferred" and not (repo / "two").exists()
    # refused by the repository's own bucket (its heal.toml tightened the rate), named so
    assert out.detail == ("rate limit: at most 1 automatic fixes per 3 minutes (this "
                          f"repository's own: [budget] in {repo.resolve() / 'heal.toml'}); "
                          "deferred, retried automatically in 40s (or now with: heal apply "
                          f"{error.id})")
    assert out.id.startswith(f"{error.id}:apply:deferred-") and out.fix_id == "pb.two"
    # queued, due in 40 s, sealed
    queued: Any = client.zrange(deferred_key(stage_settings), 0, -1, withscores=True)
    ((member, due),) = queued
    assert before + 39 < due < time.time() + 41
    assert unseal(stage_settings, DEFERRED_ROLE, member) is not None
    # not claimed: the released verdict is decided again
    assert client.get(stage_settings.key("apply", "done", error.id)) is None
    records = [json.loads(line) for line in
               (stage_settings.home / "audit.jsonl").read_text().splitlines()]
    (audited,) = [r for r in records if r["kind"] == "apply" and r["subject"] == error.id]
    assert audited["data"] == {"fix_id": "pb.two", "status": "deferred",
                               "detail": out.detail}


def test_the_rerun_of_the_failing_step_is_bounded_by_the_policy_check_timeout(
        repo: Path, applier: Applier) -> None:
    (repo / "heal.toml").write_text("[limits]\ncheck_timeout_s = 1\n")
    error = _error(repo, command=("sleep", "60"))
    started = time.monotonic()
    out = applier.apply_suggested(_verdict(error, "apply", _playbook(
        {"primary": [_touch(repo / "a")]})))
    assert time.monotonic() - started < 50  # far below the 60 s step and the 300 s default
    assert out.status == "escalated" and "the failing step still fails" in out.detail


def test_in_a_registered_repository_an_unsigned_command_is_not_rerun(
        tmp_path: Path, repo: Path, applier: Applier, monkeypatch: pytest.MonkeyPatch) -> None:
    # the operator registered the repository but not the command: the fix may run, the
    # event's command (its text came from the event) is never executed by heal
    operator = tmp_path / "operator.toml"
    operator.write_text(f'[trust]\nrepos = ["{repo.resolve()}"]\n')
    operator.chmod(0o600)
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    marker = tmp_path / "event-command-ran"
    error = _error(repo, command=("touch", str(marker)), signed=False)
    out = applier.apply_suggested(_verdict(error, "apply", _playbook(
        {"primary": [_touch(repo / "a")]})))
    assert (out.status, out.detail) == (
        "applied", "primary steps done; the event's command is not trusted, so it was not "
                   "re-run")
    assert not marker.exists()


def test_the_audit_keeps_the_first_500_characters_and_the_result_row_all_of_the_detail(
        repo: Path, applier: Applier, stage_settings: Settings,
        attempt_store: AttemptStore) -> None:
    error = _error(repo)
    reason = "r" * 499 + "XY"
    out = applier.handle(_verdict(error, "escalate", {"id": "f.a"}, reason=reason,
                                  commit="c0ffee"))
    records = [json.loads(line) for line in
               (stage_settings.home / "audit.jsonl").read_text().splitlines()]
    (audited,) = [r for r in records if r["kind"] == "apply" and r["subject"] == error.id]
    assert audited["data"] == {"fix_id": "f.a", "status": "escalated",
                               "detail": "r" * 499 + "X", "commit": "c0ffee",
                               "revert_commit": ""}
    row = attempt_store.apply_result(error.id)
    assert row is not None and row["detail"] == reason == out.detail
    assert row["commit"] == "c0ffee"


def test_a_command_fix_keeps_its_own_timeout(repo: Path, applier: Applier) -> None:
    fix = {"id": "cmd.hang", "kind": "command", "category": "SAFE",
           "rendered": {"argv": ["sleep", "60"], "timeout_s": 0.5}}
    started = time.monotonic()
    out = applier.apply_suggested(_verdict(_error(repo, command=()), "apply", fix))
    assert time.monotonic() - started < 50  # far below the 60 s default of a command fix
    assert out.status == "escalated" and "(timeout)" in out.detail, out.detail


def test_a_playbook_rerun_step_runs_in_the_directory_the_error_happened_in(
        repo: Path, applier: Applier) -> None:
    sub = repo / "sub"
    sub.mkdir()
    error = _error(repo, command=("test", "-f", "fixed"), cwd=sub)
    fix = _playbook({"primary": [_touch(sub / "fixed")], "validate": [{"action": "rerun"}]})
    out = applier.apply_suggested(_verdict(error, "apply", fix))
    assert out.status == "applied", out.detail


def test_heal_apply_that_cannot_be_audited_applies_nothing_and_says_why(
        repo: Path, applier: Applier, stage_settings: Settings,
        attempt_store: AttemptStore) -> None:
    # Given something else sits where the audit log goes
    stage_settings.home.mkdir(parents=True, exist_ok=True)
    audit_file = stage_settings.home / "audit.jsonl"
    if audit_file.exists():
        audit_file.rename(stage_settings.home / "audit.moved")
    audit_file.mkdir()
    flag = repo / "fixed"
    error = _error(repo, command=())
    out = applier.apply_suggested(_verdict(error, "apply", _playbook(
        {"primary": [_touch(flag)]})))
    assert out.status == "escalated" and not flag.exists()
    assert out.detail.startswith("nothing applied: the audit log cannot record it (")
    assert out.id == f"{error.id}:apply"  # not published as a manual application
    assert attempt_store.apply_result(error.id) is None


def test_a_held_fix_without_an_id_says_plainly_how_to_apply(
        repo: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    error = _error(repo, command=())
    base = stage_settings.key("{execution}", error.workflow.id)
    client.hset(f"{base}:state", mapping={"state": "QUARANTINED", "reason": "r",
                                          "last_failure_at": time.time()})
    out = applier.handle(_verdict(error, "apply", None))
    assert out.status == "suggested" and out.fix_id == ""
    assert out.detail.endswith(f"nothing is applied automatically; apply with: heal apply "
                               f"{error.id}")


def test_the_outcome_carries_how_long_the_stage_took(repo: Path, applier: Applier) -> None:
    started = time.monotonic()
    out = applier.handle(_verdict(_error(repo), "observe", reason="r"))
    took = time.monotonic() - started
    assert 0 <= out.duration_s <= round(took, 3) + 0.001


def test_the_intent_of_a_fix_without_an_id_is_audited_with_an_empty_id(
        repo: Path, applier: Applier, stage_settings: Settings) -> None:
    error = _error(repo, command=())
    out = applier.apply_suggested(_verdict(error, "apply", None))
    assert out.status == "escalated"
    records = [json.loads(line) for line in
               (stage_settings.home / "audit.jsonl").read_text().splitlines()]
    (intent,) = [r for r in records if r["kind"] == "apply.intent" and r["subject"] == error.id]
    assert intent["data"] == {"fix_id": "", "decision": "apply"}
