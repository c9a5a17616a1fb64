"""Notifications through the real Redis, pinned on their effects: the dedupe mark (its name
and how long it lasts), a dead Redis that still lets the notification out, and the breaker
and workflow changes that reach the notifications file through the alerting auditor
(pipeline.guardrails.escalation, pipeline.guardrails.alerts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.guardrails.alerts import alerting_audit, alerting_breaker
from pipeline.guardrails.breaker import BreakerConfig
from pipeline.guardrails.escalation import EscalationContext, LogSink, Notifier, evaluate
from pipeline.guardrails.execution import ExecutionGuard, ExecutionPolicy


def _notification() -> Any:
    n = evaluate(EscalationContext(fingerprint="fp-x", now=1000.0, first_seen=1000.0,
                                   attempts=3))
    assert n is not None
    return n


def _logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_dedupe_mark_is_named_by_prefix_and_id_and_lasts_dedupe_s(
        client: redis.Redis, prefix: str, tmp_path: Path) -> None:
    n = _notification()
    notifier = Notifier([LogSink(tmp_path / "n.jsonl")], client=client, key_prefix=prefix,
                        dedupe_s=120)
    assert notifier.notify(n) == {"log": "ok"}
    assert 110 < client.ttl(f"{prefix}:escalation:{n.id}") <= 120
    assert notifier.notify(n) == {"log": "deduplicated"}
    other = Notifier([LogSink(tmp_path / "n.jsonl")], client=client, key_prefix=prefix + "x")
    assert other.notify(n) == {"log": "ok"}  # another installation's prefix
    assert 86000 < client.ttl(f"{prefix}x:escalation:{n.id}") <= 86400
    assert len(_logged(tmp_path / "n.jsonl")) == 2


def test_a_dead_redis_never_loses_a_notification(tmp_path: Path, dead_redis: redis.Redis) -> None:
    notifier = Notifier([LogSink(tmp_path / "n.jsonl")], client=dead_redis)
    n = _notification()
    assert notifier.notify(n) == {"log": "ok"}
    assert notifier.notify(n) == {"log": "ok"}
    assert len(_logged(tmp_path / "n.jsonl")) == 2


def test_a_breaker_trip_and_a_degraded_workflow_reach_a_person(
        client: redis.Redis, prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_WEBHOOK_URL", raising=False)
    settings = Settings(None, None, tmp_path, prefix)
    breaker = alerting_breaker(client, settings, BreakerConfig(step_threshold=1, min_volume=1))
    breaker.record_revert("lint", None, "r1")
    notes = _logged(tmp_path / "notifications.jsonl")
    assert [(n["kind"], n["rule"], n["severity"]) for n in notes] == [
        ("breaker", "breaker-open", "critical")]
    assert notes[0]["summary"].startswith("heal breaker step:lint: CLOSED -> OPEN (1 revert(s)")
    assert '"breaker.transition"' in (tmp_path / "audit.jsonl").read_text()

    guard = ExecutionGuard(client, settings, ExecutionPolicy(degrade_after=1),
                           audit=alerting_audit(settings, client))
    guard.on_step_result("nightly", "test", False, "X")
    notes = _logged(tmp_path / "notifications.jsonl")
    assert notes[-1]["rule"] == "execution-degraded" and notes[-1]["step"] == "test"


def test_a_bad_webhook_url_turns_off_only_the_notifications(
        client: redis.Redis, prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_WEBHOOK_URL", "gopher://nowhere")
    settings = Settings(None, None, tmp_path, prefix)
    breaker = alerting_breaker(client, settings, BreakerConfig(step_threshold=1, min_volume=1))
    assert breaker.record_revert("lint", None, "r1")[0].dst.value == "OPEN"
    assert not breaker.allow("lint", None)[0]
    assert _logged(tmp_path / "notifications.jsonl") == []
    assert '"breaker.transition"' in (tmp_path / "audit.jsonl").read_text()
