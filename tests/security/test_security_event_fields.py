"""Attack 1: one event XADDed to heal:errors names a real repository, a command of the
attacker's and a mode above the repository's policy. Event fields are data: the command is
never run, an unregistered repository is diagnosed only (and the decision says so), and the
mode cannot be raised. Real embedded engines, the stages through the real runtime."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import VerdictEvent
from pipeline.runtime import drain_inline
from tests.security._support import (
    heal_state,
    hostile_event,
    verdict_of,
    victim_repo,
    wait_outcome,
    write_operator,
    xadd_raw,
)


@pytest.fixture
def env(heal_env: dict[str, str], redis_url: str) -> tuple[Settings, redis.Redis]:
    return Settings.from_env(), redis.Redis.from_url(redis_url)


def test_hostile_event_in_an_unregistered_repository_is_diagnosed_only(
        tmp_path: Path, env: tuple[Settings, redis.Redis],
        caplog: pytest.LogCaptureFixture) -> None:
    settings, client = env
    root = victim_repo(tmp_path)
    before = heal_state(root)
    pwned = tmp_path / "PWNED"
    event = hostile_event(root, pwned)
    xadd_raw(client, settings, "errors", event)

    with caplog.at_level(logging.WARNING, logger="heal.trust"):
        drain_inline(settings, client)

    outcome = wait_outcome(client, settings, event["id"], timeout_s=5)
    assert outcome is not None, "the event was lost"
    verdict = verdict_of(client, settings, event["id"])
    assert isinstance(verdict, VerdictEvent)
    # diagnosed (a fix was found) but not acted on, and the decision says why
    assert (verdict.fix or {}).get("pattern_id") == "format.ruff_format"
    assert verdict.decision == "observe"
    assert "diagnosed only" in verdict.reason and "not registered" in verdict.reason
    assert outcome.status == "observed"
    assert not pwned.exists(), "the event's command ran"
    assert heal_state(root) == before
    assert any("not registered" in r.getMessage() for r in caplog.records)


def test_registered_repository_still_never_runs_the_event_command_nor_raises_the_mode(
        tmp_path: Path, env: tuple[Settings, redis.Redis],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings, client = env
    root = victim_repo(tmp_path)  # heal.toml: mode = "suggest"
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{root.resolve()}"]\n')))
    before = heal_state(root)
    pwned = tmp_path / "PWNED"
    event = hostile_event(root, pwned, mode="auto")
    xadd_raw(client, settings, "errors", event)

    drain_inline(settings, client)

    outcome = wait_outcome(client, settings, event["id"], timeout_s=5)
    verdict = verdict_of(client, settings, event["id"])
    assert outcome is not None and verdict is not None
    assert not pwned.exists(), "the event's command ran in a worktree or the repository"
    assert verdict.decision != "apply"
    assert not any(r.get("name") == "failing-command" for r in verdict.verification)
    assert "not trusted" in verdict.reason or any(
        "not trusted" in str(c.get("reason")) for c in verdict.preflight), verdict
    assert outcome.status != "applied"
    assert heal_state(root)[0] == before[0], "a fix was committed on the user's branch"


def test_an_event_may_lower_the_mode_but_not_raise_it(
        tmp_path: Path, env: tuple[Settings, redis.Redis],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings, client = env
    root = victim_repo(tmp_path, 'mode = "auto-safe"\n')
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{root.resolve()}"]\n'
        'commands = [["ruff", "format", "--check", "."]]\n')))
    event = hostile_event(root, tmp_path / "PWNED", mode="observe")
    event["command"] = ["ruff", "format", "--check", "."]
    xadd_raw(client, settings, "errors", event)
    drain_inline(settings, client)
    verdict = verdict_of(client, settings, event["id"])
    assert verdict is not None and verdict.decision == "observe", verdict
