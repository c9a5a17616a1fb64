"""What the workflow's execution state allows heal to do on its own for one error.

The validate stage asks before it decides "apply", the apply stage asks again right before it
acts (the state may have changed in between). QUARANTINED: nothing is applied automatically,
heal still diagnoses and suggests, and every decision names the state, its reason, since when
and how to lift it. DEGRADED: an automatic fix needs ``execution.min_auto_confidence +
execution.degraded_confidence_bonus`` and every built-in judge votes (strict validation).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.guardrails.execution import (
    ExecutionGuard,
    WorkflowState,
    lift_command,
    workflow_name,
)
from pipeline.policy import Policy


@dataclass(frozen=True)
class WorkflowGate:
    workflow: str
    state: WorkflowState
    reason: str
    since: float
    min_confidence: float  # the lowest lookup score an automatic fix may act on now
    strict: bool  # every built-in judge votes, whatever the category

    @property
    def auto_allowed(self) -> bool:
        return self.state is not WorkflowState.QUARANTINED

    def note(self) -> str:
        """One sentence for every decision taken under a non-RUNNING state ('' otherwise)."""
        if self.state is WorkflowState.RUNNING:
            return ""
        when = dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if self.since else "unknown"
        lift = f"how to lift: `{lift_command(self.workflow)}`"
        if self.state is WorkflowState.QUARANTINED:
            why = self.reason or "no reason recorded"
            return (f"workflow {self.workflow} is quarantined ({why}, since {when}, {lift}): "
                    "nothing is applied automatically")
        return (f"workflow {self.workflow} is degraded ({self.reason}, since {when}, {lift}): "
                f"automatic fixes need confidence >= {self.min_confidence:.2f} and every "
                "judge votes")

    def refusal(self, score: float) -> str:
        """Why an automatic fix with lookup score ``score`` may not be applied now, or ''."""
        if not self.auto_allowed:
            return self.note()
        if score < self.min_confidence - 1e-9:
            base = f"match confidence {score:.2f} is below {self.min_confidence:.2f}"
            return f"{base}; {self.note()}" if self.note() else \
                f"{base} (execution.min_auto_confidence)"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "state": self.state.value, "reason": self.reason,
                "since": self.since, "min_confidence": round(self.min_confidence, 4),
                "strict_validation": self.strict}


def policy_at(path: str, settings: Settings) -> Policy:
    """The policy of the git repository containing ``path`` (defaults outside one), its
    guardrail thresholds under the operator configuration of ``settings``
    (:func:`pipeline.trust.operator.governed`: a repository may only tighten them)."""
    from pipeline.errors import GitError
    from pipeline.gitops import find_root
    from pipeline.policy import policy_for
    from pipeline.trust.operator import governed

    if not path:
        return governed(settings, Policy())
    try:
        return governed(settings, policy_for(find_root(path)).current())
    except GitError:
        return governed(settings, Policy())


def guard_at(client: Any, settings: Settings, path: str) -> ExecutionGuard:
    """An ExecutionGuard with the thresholds of the repository at ``path``, whose state
    changes notify a person like those of `heal run` (a bad HEAL_WEBHOOK_URL only turns the
    notifications off: the state is still kept and audited)."""
    from pipeline.errors import HealError
    from pipeline.guardrails.alerts import alerting_audit

    limits = policy_at(path, settings).limits.execution()
    try:
        return ExecutionGuard(client, settings, limits, audit=alerting_audit(settings, client))
    except HealError:
        return ExecutionGuard(client, settings, limits)


def gate_for(client: Any, settings: Settings, error: ErrorEvent, policy: Policy) -> WorkflowGate:
    """The gate of the workflow ``error`` belongs to, under the repository's ``policy`` (its
    thresholds as the operator configuration of ``settings`` lets them be).

    Raises:
        StreamUnavailable: Redis cannot be reached (the stage retries).
    """
    from pipeline.trust.operator import governed

    limits = governed(settings, policy).limits
    name = workflow_name(error.workflow.id, error.repo.path)
    guard = ExecutionGuard(client, settings, limits.execution())
    decision = guard.should_execute_step(name)  # the state is per workflow, not per step
    state, reason = guard.state(name)
    base = limits.get("execution.min_auto_confidence")
    bonus = limits.get("execution.degraded_confidence_bonus") \
        if state is WorkflowState.DEGRADED else 0.0
    return WorkflowGate(name, state, reason, guard.since(name), base + bonus,
                        decision.strict_validation)
