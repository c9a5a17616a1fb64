"""The ``lifecycle`` consumer group: outcomes -> statistics, lifecycle transitions, breaker."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import redis

from pipeline.config import STREAM_OUTCOMES, Settings
from pipeline.errors import EngineError, Retry, StreamUnavailable
from pipeline.events import OutcomeEvent
from pipeline.guardrails._connect import connect_redis, open_database
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.guardrails.escalation import LogSink, NotificationSink, Notifier, WebhookSink
from pipeline.guardrails.gate import policy_at
from pipeline.lifecycle.escalate import EscalationHook
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.stage import Encodable, StageContext
from storage.lifecycle import LifecycleStore

GROUP = "lifecycle"
INPUT = STREAM_OUTCOMES
OUTPUT = None

SWEEP_EVERY_S = 3600


class LifecycleHandler:
    decode = staticmethod(OutcomeEvent.decode)

    def __init__(self, service: LifecycleService, sweep: Callable[[], None]) -> None:
        self.service = service
        self.sweep = sweep

    def handle(self, event: Any) -> Sequence[Encodable]:
        try:
            # graduation and quarantine thresholds: the repository's heal.toml [lifecycle]
            limits = policy_at(event.error.repo.path).limits
            self.service.policy = limits.lifecycle()
            if self.service.breaker is not None:  # heal.toml [breaker] thresholds
                self.service.breaker.config = limits.breaker()
            self.service.handle(event)
            self.sweep()
        except EngineError as exc:  # engines come back; the event must not be lost
            raise Retry(str(exc), delay=5.0) from exc
        return []


def _notifier(settings: Settings, client: redis.Redis) -> Notifier:
    sinks: list[NotificationSink] = [LogSink(settings.home / "notifications.jsonl")]
    webhook = os.environ.get("HEAL_WEBHOOK_URL")
    if webhook:
        sinks.append(WebhookSink(webhook))  # raises HealError for a URL that is not http(s)
    return Notifier(sinks, client=client, key_prefix=settings.prefix)


def _count(client: redis.Redis, settings: Settings, fingerprint: str, fix_id: str) -> int:
    """One more "could not run" for the pair (kept 30 days).

    Raises: StreamUnavailable (the event is retried)."""
    key = settings.key("lifecycle", "unrunnable", fingerprint, fix_id)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 30 * 86400)
        n, _ = pipe.execute()
    except redis.RedisError as exc:
        raise StreamUnavailable(f"lifecycle: Redis unreachable: {exc}") from exc
    return int(n)


def build(ctx: StageContext) -> LifecycleHandler:
    settings = ctx.settings
    db = ctx.resources.get("db") or open_database(settings)
    client = ctx.resources.get("redis") or connect_redis(settings)
    audit = AuditLog(settings, db=db)
    store = LifecycleStore(db)
    service = LifecycleService(
        store=store,
        breaker=CircuitBreaker(client, settings, audit=audit),
        audit=audit,
        policy=LifecyclePolicy(),
        escalation=EscalationHook(store, _notifier(settings, client)),
        count_unrunnable=lambda fp, fix_id: _count(client, settings, fp, fix_id),
    )

    def sweep() -> None:
        # at most once an hour across every worker: deprecate pairs unused for the period
        try:
            due = client.set(settings.key("lifecycle", "sweep"), "1", nx=True, ex=SWEEP_EVERY_S)
        except redis.RedisError:
            return  # the next event tries again; the outcome itself is already recorded
        if due:
            for t in store.deprecate_unused(service.policy):
                audit.append("lifecycle.transition", f"{t.fingerprint}/{t.fix_id}",
                             {"from": t.src.value, "to": t.dst.value, "reason": t.reason})

    return LifecycleHandler(service, sweep)
