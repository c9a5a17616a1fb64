"""record_step_result: execution state and precedent learning together, on a real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from pipeline.lifecycle.precedent import PrecedentLearner, StepFailure
from pipeline.lifecycle.steps import record_step_result


class MemoryStore:
    """In-memory PrecedentStore (the PostgreSQL one is tested in test_lifecycle_precedent)."""

    def __init__(self) -> None:
        self.failures: dict[tuple[str, str, str], StepFailure] = {}
        self.drafts: list[dict[str, Any]] = []

    def remember_failure(self, f: StepFailure) -> None:
        self.failures[(f.workflow, f.step, f.fingerprint)] = f

    def failures_for_step(self, workflow: str, step: str) -> list[StepFailure]:
        return [f for k, f in self.failures.items() if k[:2] == (workflow, step)]

    def forget_failure(self, f: StepFailure) -> None:
        self.failures.pop((f.workflow, f.step, f.fingerprint), None)

    def save_draft(self, draft: dict[str, Any]) -> bool:
        self.drafts.append(draft)
        return True


def test_learning_pauses_while_degraded(redis_url: str, tmp_path: Path, prefix: str) -> None:
    guard = ExecutionGuard(redis.Redis.from_url(redis_url), Settings(redis_url, None, tmp_path,
                                                                     prefix))
    learner = PrecedentLearner(MemoryStore(), diff=lambda repo, a, b: f"diff {a}..{b}\n")
    common = {"workflow": "wf", "step": "lint", "repo_path": "/repo"}
    for i in range(3):
        report = record_step_result(guard, learner, ok=False, fingerprint="fp", commit=f"c{i}",
                                    **common)
    assert report.after is WorkflowState.DEGRADED and report.learning_paused
    report = record_step_result(guard, learner, ok=True, commit="c9", **common)
    assert report.learned == []  # degraded: nothing learned
    guard.reset("wf")
    record_step_result(guard, learner, ok=False, fingerprint="fp", commit="c10", **common)
    report = record_step_result(guard, learner, ok=True, commit="c11", **common)
    assert [d["rendered"]["diff"] for d in report.learned] == ["diff c10..c11\n"]
