"""What the lifecycle stage does with one outcome: feed the circuit breaker, record the
outcome and the statistics, apply the transition it causes, audit every decision.

A "failed" outcome whose fix could not run at all (exit 127, see
:data:`pipeline.lifecycle.graduation.UNRUNNABLE`) is counted per (fingerprint, fix); at
``policy.unrunnable_after`` (heal.toml ``[lifecycle] unrunnable_quarantine_after``) the pair is
QUARANTINED and a person is notified through the escalation sinks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipeline.events import OutcomeEvent
from pipeline.guardrails.breaker import CircuitBreaker, error_scope
from pipeline.guardrails.escalation import Notification
from pipeline.lifecycle.causes import CauseLearner
from pipeline.lifecycle.escalate import EscalationHook
from pipeline.lifecycle.graduation import UNRUNNABLE, LifecyclePolicy
from pipeline.lifecycle.graduation import Transition as LifecycleTransition


class Auditor(Protocol):
    def append(self, kind: str, subject: str, data: dict[str, Any], *,
               once: str = "") -> Any: ...


class OutcomeStore(Protocol):
    def record_outcome(self, rec: Any, policy: LifecyclePolicy, *,
                       resumable: bool = False) -> Any: ...

    def finish(self, event_id: str) -> None: ...

    def flaky(self, fingerprint: str) -> bool: ...


class References(Protocol):
    def after_outcome(self, event: OutcomeEvent, kind: str | None) -> Any: ...


@dataclass
class LifecycleService:
    store: OutcomeStore
    breaker: CircuitBreaker | None
    audit: Auditor | None
    policy: LifecyclePolicy
    escalation: EscalationHook | None = None
    #: a verified resolution adds its error text to the tier 2 references of its pattern
    references: References | None = None
    #: learns "fixing A cleared B" causal edges from applied outcomes (tier 3)
    causes: CauseLearner | None = None
    #: (fingerprint, fix id) -> how many times that fix could not run (shared counter)
    count_unrunnable: Callable[[str, str], int] | None = None

    def handle(self, event: OutcomeEvent) -> LifecycleTransition | None:
        """Record one outcome; returns the lifecycle transition it caused, if any.

        The breaker is fed first: it is idempotent per error id (the same member the apply
        stage uses when it counts its own rollback), so neither a redelivery nor the apply
        stage having counted it already makes one revert count twice.

        Raises:
            StreamUnavailable / DatabaseUnavailable: an engine is down (the caller retries).
        """
        from storage.lifecycle import OutcomeRecord  # storage is optional for pure callers

        wf = event.error.workflow
        if self.breaker is not None:
            if event.status == "rolled_back":
                self.breaker.record_revert(*error_scope(event.error), event.error_id)
            elif event.status == "applied":
                self.breaker.record_success(*error_scope(event.error), event.error_id)
        fingerprint = event.fine or event.error_id
        # a success on a fingerprint known to be flaky proves nothing about the fix
        credit = event.status != "applied" or not self.store.flaky(fingerprint)
        rec = OutcomeRecord(
            event_id=event.id, error_id=event.error_id, fingerprint=fingerprint,
            fix_id=event.fix_id, status=event.status, workflow=wf.id, step=wf.step,
            commit=event.error.repo.commit, repo=event.error.repo.path, credit=credit,
        )
        # resumable: when an engine fails in a step below, the redelivery resumes the steps
        # from the stored result (counted once, audited once) instead of skipping them
        result = self.store.record_outcome(rec, self.policy, resumable=True)
        if not result.new:
            return None
        for failed in event.failed_fixes:  # ranked alternatives that failed in this attempt
            self.store.record_outcome(replace(rec, event_id=f"{event.id}:{failed}",
                                              fix_id=failed, status="failed"), self.policy)
        if self.escalation is not None:
            self.escalation.after_outcome(event, fingerprint)
        if self.references is not None:
            self.references.after_outcome(event, result.kind if credit else None)
        # a replay copy's repeat of its original's attempt teaches nothing its original did not
        if self.causes is not None and credit and not result.repeat:
            self.causes.after_outcome(event)
        if self.audit is not None and result.kind is not None:
            self.audit.append("lifecycle.outcome", f"{fingerprint}/{event.fix_id}", {
                "event_id": event.id, "status": event.status, "outcome": result.kind,
                "successes": result.stats.successes, "failures": result.stats.failures,
                "state": str(result.state)}, once=f"lifecycle.outcome:{event.id}")
        transition: LifecycleTransition | None = result.transition
        unrunnable = event.status == "failed" and event.detail.startswith(UNRUNNABLE)
        if transition is None and unrunnable and not result.repeat:  # a copy's counts once
            transition = self._unrunnable(event, fingerprint)
        if transition is not None and self.audit is not None:
            self.audit.append("lifecycle.transition", f"{fingerprint}/{event.fix_id}", {
                "from": transition.src.value, "to": transition.dst.value,
                "reason": transition.reason, "event_id": event.id},
                once=f"lifecycle.transition:{event.id}")
        self.store.finish(event.id)
        return transition

    def _unrunnable(self, event: OutcomeEvent, fingerprint: str) -> LifecycleTransition | None:
        """Count a fix that could not run; quarantine it (and notify) at the threshold."""
        if self.count_unrunnable is None or not event.fix_id:
            return None
        n = self.count_unrunnable(fingerprint, event.fix_id)
        if n < self.policy.unrunnable_after:
            return None
        quarantine = getattr(self.store, "quarantine", None)
        if quarantine is None:
            return None
        reason = (f"could not run {n} times (threshold {self.policy.unrunnable_after}, "
                  "[lifecycle] unrunnable_quarantine_after): never offered until "
                  "`heal unquarantine`")
        transition: LifecycleTransition | None = quarantine(fingerprint, event.fix_id, reason)
        if transition is not None and self.escalation is not None:
            wf = event.error.workflow
            self.escalation.notifier.notify(Notification(
                id=f"unrunnable-{fingerprint[:24]}-{event.fix_id}", rule="fix-cannot-run",
                fingerprint=fingerprint,
                summary=f"heal quarantined fix {event.fix_id}: its command could not run "
                        f"{n} times",
                attempts=n, actions_tried=(event.fix_id,), last_error=event.detail[-4000:],
                suggested_action="install the tool the fix needs (or correct the fix), then "
                                 f"`heal unquarantine {fingerprint}`",
                workflow=wf.id, step=wf.step))
        return transition
