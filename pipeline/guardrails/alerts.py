"""State changes that reach a person: breaker trips, quarantines, workflow state changes.

Every guardrail already audits its state changes (``breaker.transition``,
``lifecycle.transition``, ``execution.transition``); :class:`AlertingAudit` is the auditor
they are given, so the same append that records a change also notifies, with a severity, and
deduplicated by the :class:`~pipeline.guardrails.escalation.Notifier` (one notification per
change per dedupe period). Which changes notify is the table :data:`ALERTS`. A notification
that cannot be delivered is logged by the notifier; it never undoes or blocks the change.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.escalation import (
    LogSink,
    Notification,
    NotificationSink,
    Notifier,
    Severity,
    WebhookSink,
)

log = logging.getLogger("heal.alerts")

#: audit kind -> (severity of the change's destination state, or None: no notification)
Alert = Callable[[dict[str, Any]], Severity | None]

ALERTS: dict[str, Alert] = {
    # a breaker opening stops every automatic fix in its scope
    "breaker.transition": lambda d: {"OPEN": Severity.CRITICAL,
                                     "FORCED_OPEN": Severity.WARNING}.get(str(d.get("to"))),
    # a quarantined fix is never applied again until a person lifts it
    "lifecycle.transition": lambda d: (Severity.WARNING if d.get("to") == "QUARANTINED"
                                       else None),
    # every workflow state change: QUARANTINED stops automatic fixes, DEGRADED tightens them
    "execution.transition": lambda d: {"QUARANTINED": Severity.CRITICAL,
                                       "DEGRADED": Severity.WARNING,
                                       "RUNNING": Severity.INFO}.get(str(d.get("to"))),
}

ACTIONS = {
    "breaker.transition": "no automatic fix runs in this scope until the cooldown ends; look "
                          "at the reverted fixes (heal breaker status), then wait or "
                          "`heal breaker reset SCOPE`",
    "lifecycle.transition": "the fix is never applied again until `heal unquarantine FP`; "
                            "see `heal explain FP` for why it was reverted",
    "execution.transition": "see `heal status` for the workflow; `heal unquarantine "
                            "--workflow ID` lifts a quarantine",
}


def build_notifier(settings: Settings, client: redis.Redis | None,
                   dedupe_s: int = 86400) -> Notifier:
    """The log sink (``$HEAL_HOME/notifications.jsonl``) and ``HEAL_WEBHOOK_URL`` when set.

    Raises:
        HealError: HEAL_WEBHOOK_URL is not an http(s) URL.
    """
    sinks: list[NotificationSink] = [LogSink(settings.home / "notifications.jsonl")]
    webhook = os.environ.get("HEAL_WEBHOOK_URL")
    if webhook:
        sinks.append(WebhookSink(webhook))
    return Notifier(sinks, client=client, key_prefix=settings.prefix, dedupe_s=dedupe_s)


def change_notification(kind: str, subject: str, data: dict[str, Any]) -> Notification | None:
    """The notification one audited state change deserves, or None."""
    alert = ALERTS.get(kind)
    severity = alert(data) if alert is not None else None
    if severity is None:
        return None
    src, dst, reason = data.get("from", "?"), data.get("to", "?"), data.get("reason", "")
    what = kind.split(".", 1)[0]
    ident = hashlib.sha256(f"{kind}|{subject}|{src}|{dst}|{reason}".encode()).hexdigest()[:16]
    return Notification(
        id=ident, rule=f"{what}-{str(dst).lower()}", fingerprint=subject if what == "lifecycle"
        else "", summary=f"heal {what} {subject}: {src} -> {dst} ({reason})", attempts=0,
        actions_tried=(), last_error="", suggested_action=ACTIONS[kind],
        workflow=str(data.get("workflow", "")), step=str(data.get("step", "")),
        severity=severity.value, kind=what)


class AlertingAudit:
    """An auditor that records like :class:`AuditLog` and notifies the changes in ALERTS."""

    def __init__(self, inner: Any, notifier: Notifier) -> None:
        self.inner = inner
        self.notifier = notifier

    def append(self, kind: str, subject: str, data: dict[str, Any] | None = None, *,
               once: str = "") -> Any:
        """Raises what the inner auditor raises (the change is recorded first)."""
        entry = self.inner.append(kind, subject, data or {}, once=once)
        try:
            notification = change_notification(kind, subject, data or {})
            if notification is not None:
                self.notifier.notify(notification)
        except (HealError, OSError) as exc:  # a lost notification never undoes the change
            log.error("notification of %s %s failed: %s", kind, subject, exc)
        return entry


def alerting_audit(settings: Settings, client: redis.Redis | None, db: Any = None
                   ) -> AlertingAudit:
    """The audit log of ``settings`` (and ``db``) that also notifies state changes."""
    return AlertingAudit(AuditLog(settings, db=db, redis_client=client),
                         build_notifier(settings, client))


def alerting_breaker(client: redis.Redis, settings: Settings, config: Any = None,
                     db: Any = None) -> Any:
    """The circuit breaker (with ``config``, a BreakerConfig, or the defaults) whose trips
    notify (a bad HEAL_WEBHOOK_URL only disables the notifications: the breaker itself keeps
    working)."""
    from pipeline.guardrails.breaker import CircuitBreaker

    try:
        audit: Any = alerting_audit(settings, client, db)
    except HealError as exc:
        log.error("breaker notifications off: %s", exc)
        audit = None
    return CircuitBreaker(client, settings, config, audit=audit)
