"""settle_outcomes (pipeline.apply.applier), called directly on the real engines: after a
manual application, the lifecycle stage records the published outcome in this process when no
lifecycle worker runs, and only that stage; with a live lifecycle worker it is left to it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis

from pipeline.apply.applier import Applier, settle_outcomes
from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.events import ErrorEvent, Repo, VerdictEvent, Workflow
from pipeline.trust.attest import attest
from storage.attempts import AttemptStore


def _applied(root: Path, settings: Settings, client: redis.Redis,
             store: AttemptStore) -> None:
    eid = f"mut-{uuid.uuid4().hex[:10]}"
    err = attest(ErrorEvent(id=eid, text="boom", command=(), exit_code=1,
                            repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD")),
                            workflow=Workflow(id=f"wf-{eid}", step="s"),
                            tags={"cwd": str(root)}), settings)
    fix = {"id": "pb.t", "kind": "playbook",
           "rendered": {"steps": {"primary": [{"name": "t", "argv": ["touch", "done"]}]}}}
    out = Applier(settings, client, store).apply_suggested(VerdictEvent(
        id=f"{eid}:validate", error_id=eid, error=err, fine="fp", fix=fix, decision="apply"))
    assert out.status == "applied", out.detail


def _groups(client: redis.Redis, stream: str) -> dict[str, Any]:
    raw: Any = client.xinfo_groups(stream)
    return {str(g["name"].decode() if isinstance(g["name"], bytes) else g["name"]): g
            for g in raw}


def test_without_a_lifecycle_worker_only_the_lifecycle_stage_is_drained_here(
        tmp_path: Path, heal_env: dict[str, str], client: redis.Redis,
        attempt_store: AttemptStore) -> None:
    settings = Settings.from_env()
    _applied(create_repo(tmp_path / "shop"), settings, client, attempt_store)
    settle_outcomes(settings, client)
    groups = _groups(client, settings.stream("outcomes"))
    entries: Any = client.xrange(settings.stream("outcomes"))
    (last,) = [entry_id for entry_id, _ in entries]
    assert list(groups) == ["lifecycle"]
    assert groups["lifecycle"]["last-delivered-id"] == last  # the outcome was read
    assert groups["lifecycle"]["pending"] == 0  # handled and acknowledged
    # no other stage was drained (their input streams were never touched)
    for name in ("errors", "verdicts"):
        assert not client.exists(settings.stream(name)), name


def test_with_a_live_lifecycle_worker_the_outcome_is_left_to_it(
        tmp_path: Path, heal_env: dict[str, str], client: redis.Redis,
        attempt_store: AttemptStore) -> None:
    settings = Settings.from_env()
    _applied(create_repo(tmp_path / "shop"), settings, client, attempt_store)
    client.set(settings.key("alive", "lifecycle", "w1"), b"1", ex=60)
    settle_outcomes(settings, client)
    assert _groups(client, settings.stream("outcomes")) == {}
