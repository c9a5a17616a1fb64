"""The apply stage when Redis fails (pipeline.apply.applier): every Redis error becomes
StreamUnavailable saying the apply stage lost Redis (the runtime retries the event), raised
before anything is claimed or after the work is recorded, never a bare redis traceback."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.errors import StreamUnavailable
from pipeline.events import ErrorEvent, Repo, VerdictEvent, Workflow
from pipeline.trust.attest import attest
from storage.attempts import AttemptStore


class _FailOn:
    """The real client, except that the named commands fail as if Redis had gone away."""

    def __init__(self, client: redis.Redis, *names: str) -> None:
        self._client, self._names = client, set(names)

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            def down(*_: Any, **__: Any) -> Any:
                raise redis.ConnectionError("Connection refused")
            return down
        return getattr(self._client, name)


def _verdict(root: Path, decision: str = "apply", command: tuple[str, ...] = ()) -> VerdictEvent:
    eid = f"mut-{uuid.uuid4().hex[:10]}"
    err = attest(ErrorEvent(id=eid, text="boom", command=command, exit_code=1,
                            repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD")),
                            workflow=Workflow(id=f"wf-{eid}", step="s"),
                            tags={"cwd": str(root)}), Settings.from_env())
    fix = {"id": "pb.t", "kind": "playbook",
           "rendered": {"steps": {"primary": [{"name": "t", "argv": ["touch", "done"]}]}}}
    return VerdictEvent(id=f"{eid}:validate", error_id=eid, error=err, fine="fp", fix=fix,
                        decision=decision, reason="r")


def _down(settings: Settings, client: Any, store: AttemptStore) -> Applier:
    return Applier(settings, client, store)


def test_redis_down_before_the_claim_changes_nothing(
        tmp_path: Path, stage_settings: Settings, client: redis.Redis,
        attempt_store: AttemptStore) -> None:
    root = create_repo(tmp_path / "shop")
    verdict = _verdict(root)
    applier = _down(stage_settings, _FailOn(client, "set"), attempt_store)
    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: Connection refused"):
        applier.handle(verdict)
    assert not (root / "done").exists()
    assert attempt_store.apply_result(verdict.error_id) is None
    applier = _down(stage_settings, _FailOn(client, "get"), attempt_store)
    client.set(stage_settings.key("apply", "done", verdict.error_id), b"in-progress")
    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: "):
        applier.handle(verdict)


def test_redis_down_when_recording_the_outcome_is_reported_not_swallowed(
        tmp_path: Path, stage_settings: Settings, client: redis.Redis,
        attempt_store: AttemptStore) -> None:
    root = create_repo(tmp_path / "shop")

    class _SetOnce(_FailOn):
        """The claim (SET NX) works, the done marker (SET with the 30-day expiry) fails."""

        def __getattr__(self, name: str) -> Any:
            if name == "set":
                def set_(key: str, value: Any, **kw: Any) -> Any:
                    if kw.get("nx"):
                        return client.set(key, value, **kw)
                    raise redis.ConnectionError("Connection refused")
                return set_
            return super().__getattr__(name)

    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: "):
        _down(stage_settings, _SetOnce(client), attempt_store).handle(
            _verdict(root, "observe"))


def test_redis_down_when_deferring_or_publishing_or_releasing_says_so(
        tmp_path: Path, stage_settings: Settings, client: redis.Redis,
        attempt_store: AttemptStore) -> None:
    root = create_repo(tmp_path / "shop")
    (root / "heal.toml").write_text("[budget]\nautomatic_fixes = 1\nautomatic_fixes_minutes = 5\n")
    live = Applier(stage_settings, client, attempt_store)
    assert live.handle(_verdict(root)).status == "applied"
    deferred = _verdict(root)
    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: "):
        _down(stage_settings, _FailOn(client, "zadd"), attempt_store).handle(deferred)
    # the claim is released, so the retried event is decided again
    assert client.get(stage_settings.key("apply", "done", deferred.error_id)) is None
    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: "):
        _down(stage_settings, _FailOn(client, "xadd"), attempt_store).apply_suggested(
            _verdict(root))
    with pytest.raises(StreamUnavailable, match=r"^apply: Redis unreachable: "):
        _down(stage_settings, _FailOn(client, "zrangebyscore"), attempt_store
              ).release_deferred()
