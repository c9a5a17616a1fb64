"""Applying a verified commit, the deferred queue and the published outcome, called directly
on the real Redis and PostgreSQL with real git repositories: a commit that conflicts leaves the
branch as it was, one applied without a trusted command says so, a reverted fix names its revert
and is counted by the breaker, a tampered deferred entry is dropped, and a manual application is
published under its own id on the outcomes stream."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from pipeline.apply.applier import DEFERRED_ROLE, Applier
from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, VerdictEvent, Workflow
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.guardrails.budget import deferred_key
from pipeline.trust.attest import attest
from pipeline.trust.seal import seal, unseal
from storage.attempts import AttemptStore

ID = ["-c", "user.email=t@t", "-c", "user.name=t"]


def _commit_on_branch(root: Path, branch: str, path: str, text: str) -> str:
    """A commit on ``branch`` (from HEAD) changing ``path``; the checkout stays where it was."""
    git(root, "branch", branch)
    git(root, "checkout", "-q", branch)
    (root / path).write_text(text)
    git(root, "add", path)
    git(root, *ID, "commit", "-q", "-m", f"heal: {path}")
    commit = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "-")
    return commit


def _verdict(root: Path, commit: str, command: tuple[str, ...], branch: str = "heal/fix",
             decision: str = "apply") -> VerdictEvent:
    eid = f"mut-{uuid.uuid4().hex[:10]}"
    err = attest(ErrorEvent(id=eid, text="boom", command=command, exit_code=1,
                            repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD"),
                                      branch="main"),
                            workflow=Workflow(id=f"wf-{eid}", step="check"),
                            tags={"cwd": str(root)}), Settings.from_env())
    return VerdictEvent(id=f"{eid}:validate", error_id=eid, error=err, fine=f"fp-{eid}",
                        fix={"id": "fix.file", "kind": "diff"}, decision=decision,
                        branch=branch, commit=commit)


def test_a_verified_commit_is_fast_forwarded_and_the_step_rerun(
        tmp_path: Path, applier: Applier, attempt_store: AttemptStore) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "fixed.txt", "ok\n")
    verdict = _verdict(root, commit, ("test", "-f", "fixed.txt"))
    out = applier.apply_suggested(verdict)
    assert out.status == "applied" and out.commit == commit
    assert out.detail == f"applied as {commit[:10]}; failing step passes again"
    assert git(root, "rev-parse", "HEAD") == commit
    row = attempt_store.apply_result(verdict.error_id)
    assert row is not None and [s["name"] for s in row["steps"]] == ["re-run failing step"]


def test_a_commit_applied_without_a_trusted_command_says_it_was_not_rerun(
        tmp_path: Path, applier: Applier) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "fixed.txt", "ok\n")
    out = applier.apply_suggested(_verdict(root, commit, ()))
    assert (out.status, out.detail) == ("applied", f"applied as {commit[:10]}; no command to "
                                                   "re-run")


def test_a_commit_that_conflicts_is_escalated_and_the_branch_is_left_as_it_was(
        tmp_path: Path, applier: Applier) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "notes.txt", "heal's version\n")
    (root / "notes.txt").write_text("the user's version\n")
    git(root, "add", "notes.txt")
    git(root, *ID, "commit", "-q", "-m", "user edit")
    head = git(root, "rev-parse", "HEAD")
    out = applier.apply_suggested(_verdict(root, commit, ("false",)))
    assert out.status == "escalated"
    assert out.detail.startswith(f"could not apply: cannot bring {commit[:10]} onto the "
                                 "working branch: ")
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain").strip() == ""
    assert (root / "notes.txt").read_text() == "the user's version\n"


def test_uncommitted_changes_to_the_fixed_file_leave_the_fix_on_its_branch(
        tmp_path: Path, applier: Applier) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "notes.txt", "heal\n")
    (root / "notes.txt").write_text("mine\n")
    head = git(root, "rev-parse", "HEAD")
    verdict = _verdict(root, commit, ("false",))
    out = applier.apply_suggested(verdict)
    assert (out.status, out.detail) == (
        "suggested", "uncommitted changes in notes.txt; left on branch heal/fix: "
                     f"heal apply {verdict.error_id}")
    assert git(root, "rev-parse", "HEAD") == head and (root / "notes.txt").read_text() == "mine\n"


def test_a_commit_that_does_not_fix_the_step_is_reverted_named_and_counted(
        tmp_path: Path, applier: Applier, client: redis.Redis, stage_settings: Settings,
        attempt_store: AttemptStore) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "fixed.txt", "ok\n")
    before = git(root, "rev-parse", "HEAD")
    verdict = _verdict(root, commit, ("sh", "-c", "exit 4"))
    out = applier.apply_suggested(verdict)
    revert = git(root, "rev-parse", "HEAD")
    assert out.status == "rolled_back" and out.commit == commit
    assert out.detail == (f"still failing after applying (exit 4); reverted by {revert[:10]}; "
                          "escalated to a human")
    assert git(root, "log", "-1", "--format=%B", revert).startswith(
        f"Revert heal fix {commit[:10]}\n\nheal: the failing step still fails after the fix "
        "(exit 4); rolled back")
    assert git(root, "diff", before, "HEAD") == ""  # the tree is as it was
    row = attempt_store.apply_result(verdict.error_id)
    assert row is not None and row["revert_commit"] == revert
    records = [json.loads(line) for line in
               (stage_settings.home / "audit.jsonl").read_text().splitlines()]
    (audited,) = [r for r in records
                  if r["kind"] == "apply" and r["subject"] == verdict.error_id]
    assert audited["data"]["revert_commit"] == revert
    assert audited["data"]["status"] == "rolled_back" and audited["data"]["commit"] == commit
    scopes = CircuitBreaker(client, stage_settings).status()["scopes"]
    wf = verdict.error.workflow
    assert scopes[f"step:{wf.id}/{wf.step}"]["reverts_in_window"] == 1


def test_a_manual_application_is_published_sealed_under_its_own_id(
        tmp_path: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "fixed.txt", "ok\n")
    verdict = _verdict(root, commit, ())
    out = applier.apply_suggested(verdict)
    assert out.id.startswith(f"{verdict.error_id}:apply:manual-")
    assert len(out.id) == len(f"{verdict.error_id}:apply:manual-") + 8
    (entry,) = _events(client, stage_settings.stream("outcomes"))
    body = unseal(stage_settings, "outcomes", entry)
    assert body is not None and OutcomeEvent.decode(body) == out
    assert out.duration_s > 0


def _events(client: redis.Redis, stream: str) -> list[bytes]:
    """The sealed ``event`` field of every entry of ``stream``, oldest first."""
    entries: Any = client.xrange(stream)
    return [bytes(fields[b"event"]) for _, fields in entries]


def _defer(client: redis.Redis, settings: Settings, member: bytes, due: float) -> None:
    client.zadd(deferred_key(settings), {member: due})


def test_only_due_sealed_deferred_verdicts_are_released_each_under_a_new_id(
        tmp_path: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    root = create_repo(tmp_path / "shop")
    verdicts = [_verdict(root, "", ("false",)) for _ in range(3)]
    now = time.time()
    for v, due in zip(verdicts, (now - 10, now - 5, now + 3600), strict=True):
        _defer(client, stage_settings, seal(stage_settings, DEFERRED_ROLE, v.encode()), due)
    # tampered entries: not sealed by an apply stage, or sealed but not a verdict
    _defer(client, stage_settings, verdicts[0].encode(), now - 20)
    _defer(client, stage_settings,
           seal(stage_settings, DEFERRED_ROLE, b'{"kind": "nonsense"}'), now - 30)
    # the two tampered ones come first, and are dropped without stopping the release
    assert applier.release_deferred(now=now) == 2
    assert client.zcard(deferred_key(stage_settings)) == 1  # the one not due yet stays
    stream = stage_settings.stream("verdicts")
    released = []
    for entry in _events(client, stream):
        body = unseal(stage_settings, "verdicts", entry)
        assert body is not None
        released.append(VerdictEvent.decode(body))
    assert [r.error_id for r in released] == [v.error_id for v in verdicts[:2]]
    for r, v in zip(released, verdicts[:2], strict=True):
        assert r.id.startswith(f"{v.error_id}:validate:retry-") and r.id != v.id
        assert r.decision == v.decision and r.error == v.error
    assert applier.release_deferred(now=now) == 0


def test_a_release_takes_at_most_limit_entries_oldest_first(
        tmp_path: Path, applier: Applier, client: redis.Redis, stage_settings: Settings) -> None:
    root = create_repo(tmp_path / "shop")
    verdicts = [_verdict(root, "", ("false",)) for _ in range(3)]
    now = time.time()
    for n, v in enumerate(verdicts):
        _defer(client, stage_settings, seal(stage_settings, DEFERRED_ROLE, v.encode()), now - n)
    assert applier.release_deferred(now=now, limit=2) == 2
    left: Any = client.zrange(deferred_key(stage_settings), 0, -1)
    assert [VerdictEvent.decode(unseal(stage_settings, DEFERRED_ROLE, m) or b"").error_id
            for m in left] == [verdicts[0].error_id]


def test_a_commit_cherry_picked_onto_a_moved_branch_is_reported_as_the_new_commit(
        tmp_path: Path, applier: Applier) -> None:
    root = create_repo(tmp_path / "shop")
    good = _commit_on_branch(root, "heal/good", "fixed.txt", "ok\n")
    bad = _commit_on_branch(root, "heal/bad", "other.txt", "no\n")
    (root / "mine.txt").write_text("the user moved on\n")
    git(root, "add", "mine.txt")
    git(root, *ID, "commit", "-q", "-m", "user commit")
    out = applier.apply_suggested(_verdict(root, good, ("test", "-f", "fixed.txt")))
    head = git(root, "rev-parse", "HEAD")
    assert out.status == "applied" and head != good
    assert out.commit == head and out.detail.startswith(f"applied as {head[:10]}; ")
    # a cherry-picked fix that does not hold: the outcome names the commit that reached the
    # branch (the one the revert undoes), not the heal branch's
    out = applier.apply_suggested(_verdict(root, bad, ("test", "-f", "absent.txt")))
    picked = git(root, "rev-parse", "HEAD~1")
    assert out.status == "rolled_back" and picked != bad
    assert out.commit == picked


def test_uncommitted_changes_with_a_fix_without_an_id_say_plainly_how_to_apply(
        tmp_path: Path, applier: Applier) -> None:
    root = create_repo(tmp_path / "shop")
    commit = _commit_on_branch(root, "heal/fix", "notes.txt", "heal\n")
    (root / "notes.txt").write_text("mine\n")
    verdict = _verdict(root, commit, ("false",))
    out = applier.apply_suggested(replace(verdict, fix={"kind": "diff"}))
    assert out.status == "suggested"
    assert out.detail.endswith(f"; left on branch heal/fix: heal apply {verdict.error_id}")
