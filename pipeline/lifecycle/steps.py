"""One call for an orchestrator (or ``heal run``) after every workflow step: update the
workflow's execution state and, unless the workflow is DEGRADED or QUARANTINED (learning
paused), learn DRAFT fixes from precedent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from pipeline.lifecycle.precedent import PrecedentLearner


@dataclass(frozen=True)
class StepReport:
    before: WorkflowState
    after: WorkflowState
    reason: str
    learned: list[dict[str, Any]] = field(default_factory=list)
    learning_paused: bool = False


def record_step_result(
    guard: ExecutionGuard, learner: PrecedentLearner | None, *, workflow: str, step: str,
    ok: bool, kind: str = "", fingerprint: str = "", repo_path: str = "", commit: str = "",
    event_id: str = "",
) -> StepReport:
    """Raises StreamUnavailable / DatabaseUnavailable / GitError from the parts it drives."""
    before, after, reason = guard.on_step_result(workflow, step, ok, kind or fingerprint,
                                                 event_id)
    paused = after is not WorkflowState.RUNNING
    learned: list[dict[str, Any]] = []
    if learner is not None and not paused:
        learned = learner.observe(workflow, step, ok, repo_path, commit, fingerprint)
    elif learner is not None and not ok:
        # still remember the failure, so a later fix on a healthy workflow can be learned
        learner.observe(workflow, step, ok, repo_path, commit, fingerprint)
    return StepReport(before, after, reason, learned, paused)
