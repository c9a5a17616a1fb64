"""Escalation from the lifecycle stage: after each new outcome, the escalation rules look at
the fingerprint's history (attempts, fixes tried, first seen) and notify a person when one
matches. An outcome the apply stage already escalated notifies at once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.events import OutcomeEvent
from pipeline.guardrails.escalation import (
    DEFAULT_RULES,
    EscalationContext,
    EscalationRule,
    Notifier,
    Trigger,
    evaluate,
)

APPLY_ESCALATED = EscalationRule(
    "apply-escalated", Trigger.IMMEDIATE, fix_kinds=frozenset({"escalate"}),
    suggested_action="heal could not fix this safely: see the outcome detail")

#: outcomes that mean "this error is still not fixed"
UNRESOLVED = frozenset({"rolled_back", "escalated", "failed", "skipped"})


class HistoryStore(Protocol):
    def attempt_summary(self, fingerprint: str) -> tuple[int, float, list[str]]: ...


@dataclass
class EscalationHook:
    store: HistoryStore
    notifier: Notifier
    rules: Sequence[EscalationRule] = (APPLY_ESCALATED, *DEFAULT_RULES[2:])

    def after_outcome(self, event: OutcomeEvent, fingerprint: str) -> dict[str, str] | None:
        """Notify when a rule matches; returns the per-sink delivery results, or None."""
        if event.status not in UNRESOLVED:
            return None
        attempts, first_seen, fixes = self.store.attempt_summary(fingerprint)
        wf = event.error.workflow
        ctx = EscalationContext(
            fingerprint=fingerprint, now=time.time(), first_seen=first_seen or time.time(),
            attempts=attempts, fix_kind="escalate" if event.status == "escalated" else "",
            workflow=wf.id, step=wf.step, actions_tried=tuple(fixes),
            last_error=(event.detail + "\n" + event.error.text[-2000:]).strip())
        notification = evaluate(ctx, self.rules)
        if notification is None:
            return None
        return self.notifier.notify(notification)
