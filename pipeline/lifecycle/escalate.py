"""Escalation from the lifecycle stage: after each new outcome, the escalation rules (the
repository's ``[escalation]`` policy, else the defaults) look at the fingerprint's history
(attempts, fixes tried, first seen, pattern, category) and notify a person when one matches.
An outcome the apply stage already escalated notifies at once; a RISKY fix waiting for a
person notifies at once. :meth:`EscalationHook.sweep` checks the time-based rules of every
unresolved fingerprint (the lifecycle stage's timer calls it), so "unfixed after T" fires even
when no new outcome arrives.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.config import Settings
from pipeline.events import OutcomeEvent
from pipeline.guardrails.escalation import (
    EscalationContext,
    EscalationRule,
    Notifier,
    Trigger,
    evaluate,
)
from pipeline.guardrails.escalation_policy import EscalationPolicy

APPLY_ESCALATED = EscalationRule(
    "apply-escalated", Trigger.IMMEDIATE, fix_kinds=frozenset({"escalate"}),
    suggested_action="heal could not fix this safely: see the outcome detail")

#: outcomes that mean "this error is still not fixed"
UNRESOLVED = frozenset({"rolled_back", "escalated", "failed", "skipped"})


class HistoryStore(Protocol):
    def attempt_summary(self, fingerprint: str) -> tuple[int, float, list[str]]: ...

    def attempt_facts(self, error_id: str) -> dict[str, str]: ...

    def unresolved(self, limit: int = 1000) -> list[dict[str, Any]]: ...


def repo_escalation(settings: Settings, repo_path: str) -> EscalationPolicy:
    """The ``[escalation]`` policy of the repository (defaults outside one), its
    ``dedupe_hours`` under the operator configuration of ``settings``: the dedupe key of a
    notification is shared by every repository, so a repository may only lower it
    (:func:`pipeline.trust.operator.cap_limits`)."""
    from pipeline.errors import GitError
    from pipeline.gitops import find_root
    from pipeline.policy import Policy, policy_for
    from pipeline.trust.operator import governed

    policy = Policy()
    if repo_path:
        with contextlib.suppress(GitError, OSError):
            policy = policy_for(find_root(repo_path)).current()
    return governed(settings, policy).escalation


def _repo_policy(repo_path: str) -> EscalationPolicy:
    """:func:`repo_escalation` under the environment's settings."""
    return repo_escalation(Settings.from_env(), repo_path)


def _rules(policy: EscalationPolicy) -> tuple[EscalationRule, ...]:
    # the apply stage's escalation stands in for "no mechanical fix" (same trigger)
    return tuple(APPLY_ESCALATED if r.name == "no-mechanical-fix" else r for r in policy.rules)


@dataclass
class EscalationHook:
    store: HistoryStore
    notifier: Notifier
    #: repository path -> its escalation policy (tests pass their own)
    policy_of: Callable[[str], EscalationPolicy] = _repo_policy
    clock: Callable[[], float] = time.time

    def after_outcome(self, event: OutcomeEvent, fingerprint: str) -> dict[str, str] | None:
        """Notify when a rule matches; returns the per-sink delivery results, or None."""
        facts = self.store.attempt_facts(event.error_id)
        risky_waiting = event.status == "suggested" and facts.get("category") == "RISKY"
        if event.status not in UNRESOLVED and not risky_waiting:
            return None
        attempts, first_seen, fixes = self.store.attempt_summary(fingerprint)
        wf = event.error.workflow
        ctx = EscalationContext(
            fingerprint=fingerprint, now=self.clock(), first_seen=first_seen or self.clock(),
            attempts=attempts, fix_kind="escalate" if event.status == "escalated" else "",
            category=facts.get("category", ""), pattern_id=facts.get("pattern_id", ""),
            workflow=wf.id, step=wf.step, actions_tried=tuple(fixes),
            last_error=(event.detail + "\n" + event.error.text[-2000:]).strip())
        policy = self.policy_of(event.error.repo.path or str(event.error.tags.get("cwd", "")))
        rules: Sequence[EscalationRule] = _rules(policy)
        if risky_waiting:  # waiting for a person is not a failure: only the RISKY rules apply
            rules = [r for r in rules if "RISKY" in r.categories]
        return self._notify(ctx, rules, policy)

    def sweep(self) -> int:
        """Check the time-based rules of every unresolved fingerprint; returns how many
        notifications were delivered (deduplicated ones do not count)."""
        sent = 0
        policies: dict[str, EscalationPolicy] = {}  # one policy read per repository
        for row in self.store.unresolved():
            repo = str(row.get("repo", ""))
            if repo not in policies:
                policies[repo] = self.policy_of(repo)
            policy = policies[repo]
            timed = [r for r in _rules(policy) if r.trigger is Trigger.AFTER_DURATION]
            if not timed:
                continue
            ctx = EscalationContext(
                fingerprint=str(row["fingerprint"]), now=self.clock(),
                first_seen=float(row["first_seen"]), attempts=int(row["attempts"]),
                category=str(row.get("category") or ""),
                pattern_id=str(row.get("pattern_id") or ""), workflow=str(row["workflow"]),
                step=str(row["step"]), actions_tried=tuple(row.get("fixes") or ()),
                last_error=f"last outcome: {row['status']}")
            results = self._notify(ctx, timed, policy)
            sent += results is not None and "ok" in results.values()
        return sent

    def _notify(self, ctx: EscalationContext, rules: Sequence[EscalationRule],
                policy: EscalationPolicy) -> dict[str, str] | None:
        notification = evaluate(ctx, rules)
        if notification is None:
            return None
        notifier = self.notifier
        if policy.dedupe_s != notifier.dedupe_s:
            notifier = replace_dedupe(notifier, policy.dedupe_s)
        return notifier.notify(notification)


def replace_dedupe(notifier: Notifier, dedupe_s: int) -> Notifier:
    """The same sinks and client with another dedupe period (per-repository policy)."""
    return Notifier(notifier.sinks, client=notifier.client, key_prefix=notifier.key_prefix,
                    dedupe_s=dedupe_s)
