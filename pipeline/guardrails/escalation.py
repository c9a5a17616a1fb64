"""Escalation: when heal hands an error to a person, and how the person hears of it.

Rules are data (:class:`EscalationRule`): escalate immediately (for example every RISKY fix, or
a fingerprint with no mechanical fix), after N attempts, or after a duration without a fix.
The first matching rule produces a :class:`Notification` carrying the context a human needs
(attempts, actions tried, last error, suggested action); :class:`Notifier` delivers it to
every sink (log file, webhook) and contains a failing sink, so one broken webhook never
stops the others or the pipeline. With a Redis client, a (fingerprint, rule) pair notifies at
most once per ``dedupe_s``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import redis

from pipeline.errors import HealError
from pipeline.homedir import dir_mode, open_private
from pipeline.runtime.connection import redis_failure

log = logging.getLogger("heal.escalation")


class NotificationFailed(HealError):
    """A sink could not deliver a notification."""


class Trigger(StrEnum):
    IMMEDIATE = "immediate"
    AFTER_ATTEMPTS = "after_attempts"
    AFTER_DURATION = "after_duration"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class EscalationRule:
    name: str
    trigger: Trigger
    attempts: int = 0
    duration_s: float = 0.0
    #: only for these categories / fix kinds / pattern ids (globs) (empty: any)
    categories: frozenset[str] = frozenset()
    fix_kinds: frozenset[str] = frozenset()
    suggested_action: str = "look at the error and the actions tried, then fix it by hand"
    patterns: frozenset[str] = frozenset()
    severity: Severity = Severity.WARNING

    def matches(self, ctx: EscalationContext) -> bool:
        if self.categories and ctx.category not in self.categories:
            return False
        if self.patterns and not any(fnmatch.fnmatchcase(ctx.pattern_id, glob)
                                     for glob in self.patterns):
            return False
        if self.fix_kinds and ctx.fix_kind not in self.fix_kinds:
            return False
        if self.trigger is Trigger.AFTER_ATTEMPTS:
            return ctx.attempts >= self.attempts
        if self.trigger is Trigger.AFTER_DURATION:
            return ctx.now - ctx.first_seen >= self.duration_s
        return True


DEFAULT_RULES: tuple[EscalationRule, ...] = (
    EscalationRule("no-mechanical-fix", Trigger.IMMEDIATE, fix_kinds=frozenset({"escalate"}),
                   suggested_action="no safe mechanical fix is known: follow the explanation"),
    EscalationRule("risky-needs-human", Trigger.IMMEDIATE, categories=frozenset({"RISKY"}),
                   suggested_action="review the proposed RISKY change and apply it by hand"),
    EscalationRule("three-attempts", Trigger.AFTER_ATTEMPTS, attempts=3),
    EscalationRule("unfixed-for-a-day", Trigger.AFTER_DURATION, duration_s=86400.0),
)


@dataclass(frozen=True)
class EscalationContext:
    fingerprint: str
    now: float
    first_seen: float
    attempts: int = 0
    category: str = ""
    fix_kind: str = ""
    workflow: str = ""
    step: str = ""
    actions_tried: tuple[str, ...] = ()
    last_error: str = ""
    pattern_id: str = ""


@dataclass(frozen=True)
class Notification:
    id: str
    rule: str
    fingerprint: str
    summary: str
    attempts: int
    actions_tried: tuple[str, ...]
    last_error: str
    suggested_action: str
    workflow: str = ""
    step: str = ""
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    severity: str = Severity.WARNING.value
    #: "escalation" (a rule fired) or the state change that notifies: "breaker", "lifecycle",
    #: "execution"
    kind: str = "escalation"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["actions_tried"] = list(self.actions_tried)
        return out


def evaluate(ctx: EscalationContext,
             rules: Sequence[EscalationRule] = DEFAULT_RULES) -> Notification | None:
    """The notification of the first rule that matches, or None."""
    for rule in rules:
        if rule.matches(ctx):
            where = (f"{ctx.workflow}/{ctx.step}" if ctx.workflow and ctx.step
                     else ctx.workflow or (f"step {ctx.step}" if ctx.step else "no named step"))
            ident = hashlib.sha256(f"{ctx.fingerprint}|{rule.name}".encode()).hexdigest()[:16]
            return Notification(
                id=ident, rule=rule.name, fingerprint=ctx.fingerprint,
                summary=(f"heal escalates {ctx.fingerprint[:16]} in {where}: rule {rule.name},"
                         f" {ctx.attempts} attempt(s)"),
                attempts=ctx.attempts, actions_tried=ctx.actions_tried,
                last_error=ctx.last_error[-4000:], suggested_action=rule.suggested_action,
                workflow=ctx.workflow, step=ctx.step, severity=rule.severity.value)
    return None


class NotificationSink(Protocol):
    name: str

    def send(self, notification: Notification) -> None:
        """Raises NotificationFailed when delivery fails."""
        ...


class LogSink:
    """A log line, and one JSON line per notification in ``path``
    (``$HEAL_HOME/notifications.jsonl``)."""

    name = "log"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, notification: Notification) -> None:
        # INFO, not WARNING: the command that escalated (heal run, heal demo) already says so,
        # and a second, unformatted line on stderr reads as a stray message
        log.info("%s (suggested: %s)", notification.summary, notification.suggested_action)
        try:
            self.path.parent.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
            # 0600: a notification names repositories, commands and what failed
            with os.fdopen(open_private(self.path), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(notification.to_dict(), sort_keys=True) + "\n")
        except OSError as exc:
            raise NotificationFailed(f"log sink {self.path}: {exc}") from exc


class WebhookSink:
    """POST the notification as JSON (Slack-compatible ``text`` field included)."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise HealError(f"webhook url must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout_s = timeout_s

    def send(self, notification: Notification) -> None:
        body = json.dumps({"text": notification.summary, **notification.to_dict()}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            # urlopen follows redirects and raises HTTPError (a URLError) for any other
            # status outside 2xx, so reaching the end of this block means delivered
            with urllib.request.urlopen(request, timeout=self.timeout_s):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise NotificationFailed(f"webhook {self.url}: {exc}") from exc


class Notifier:
    def __init__(self, sinks: Sequence[NotificationSink], client: redis.Redis | None = None,
                 key_prefix: str = "heal", dedupe_s: int = 86400) -> None:
        self.sinks = list(sinks)
        self.client = client
        self.key_prefix = key_prefix
        self.dedupe_s = dedupe_s

    def notify(self, notification: Notification) -> dict[str, str]:
        """Deliver to every sink; returns sink name -> "ok" | "deduplicated" | the error."""
        if self.client is not None and self.dedupe_s > 0:
            key = f"{self.key_prefix}:escalation:{notification.id}"
            try:
                first = self.client.set(key, "1", nx=True, ex=self.dedupe_s)
            except redis.RedisError as exc:
                # better a duplicate notification than a lost one; an ACL refusal is said
                # as one (what to grant), not as an outage
                log.warning("notification dedupe skipped: %s",
                            redis_failure(exc, "notification dedupe", self.key_prefix))
                first = True
            if not first:
                return {sink.name: "deduplicated" for sink in self.sinks}
        results: dict[str, str] = {}
        for sink in self.sinks:
            try:
                sink.send(notification)
                results[sink.name] = "ok"
            except NotificationFailed as exc:
                log.error("notification sink failed: %s", exc)
                results[sink.name] = str(exc)
        return results
