"""The ``lifecycle`` consumer group: outcomes -> statistics, lifecycle transitions, breaker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.config import STREAM_OUTCOMES
from pipeline.errors import EngineError, Retry
from pipeline.events import OutcomeEvent
from pipeline.guardrails._connect import connect_redis, open_database
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.stage import Encodable, StageContext
from storage.lifecycle import LifecycleStore

GROUP = "lifecycle"
INPUT = STREAM_OUTCOMES
OUTPUT = None


class LifecycleHandler:
    decode = staticmethod(OutcomeEvent.decode)

    def __init__(self, service: LifecycleService) -> None:
        self.service = service

    def handle(self, event: Any) -> Sequence[Encodable]:
        try:
            self.service.handle(event)
        except EngineError as exc:  # engines come back; the event must not be lost
            raise Retry(str(exc), delay=5.0) from exc
        return []


def build(ctx: StageContext) -> LifecycleHandler:
    settings = ctx.settings
    db = ctx.resources.get("db") or open_database(settings)
    client = ctx.resources.get("redis") or connect_redis(settings)
    audit = AuditLog(settings, db=db)
    service = LifecycleService(
        store=LifecycleStore(db),
        breaker=CircuitBreaker(client, settings, audit=audit),
        audit=audit,
        policy=LifecyclePolicy(),
    )
    return LifecycleHandler(service)
