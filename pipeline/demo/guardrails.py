"""The demo's guardrail scene: fixes that do not hold trip the breaker, and a person hears.

In a second sample repository, one workflow step (``demo-guardrails/checks``) meets three SAFE
breakages whose fixes verify in a clean worktree but not in the user's tree (an untracked file
the worktree never sees keeps the step failing), the way a fix that only works on a clean
checkout behaves:

1. formatting: applied, the step still fails, reverted -> the fix is QUARANTINED;
2. an unused import: the same -> the second revert within the hour trips the breaker OPEN;
3. a missing exec bit: refused by the pre-flight (breaker open) -> nothing applied.

The demo acts as the orchestrator and reports every failed run of the step to the execution
guard with the failure's category as its kind, so three SAFE failures in a row degrade the
workflow. Every state change is read back from the notifications it produced, with its reason
(from the demo's own state home: none of it reaches the real notifications or the webhook,
see pipeline.demo.isolation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.demo.runner import Demo, Row
from pipeline.demo.sample import Breakage, break_exec_bit, break_formatting, break_unused_import
from pipeline.demo.sample import create_repo as create_sample
from pipeline.events import Workflow
from pipeline.guardrails.alerts import alerting_audit
from pipeline.guardrails.execution import ExecutionGuard

WORKFLOW = "demo-guardrails"
STEP = "checks"


@dataclass
class Scene:
    rows: list[Row] = field(default_factory=list)
    #: the notified state changes (breaker, lifecycle, execution), oldest first
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: HEAL_WEBHOOK_URL is set: the demo sent it none of the changes (they would page on-call)
    webhook_withheld: bool = False

    def tripped(self) -> bool:
        return any(c["kind"] == "breaker" and "-> OPEN" in c["summary"] for c in self.changes)

    def quarantined_or_degraded(self) -> bool:
        return any(("-> QUARANTINED" in c["summary"] or "-> DEGRADED" in c["summary"])
                   for c in self.changes)


def _format_that_only_a_clean_tree_passes(root: Path) -> None:
    break_formatting(root)
    (root / "shop/local_only.py").write_text("x=1\n")  # untracked: not in the worktree


def _lint_that_only_a_clean_tree_passes(root: Path) -> None:
    break_unused_import(root)
    (root / "shop/local_only_lint.py").write_text("import os\n")


ROUNDS: list[tuple[Breakage, Any]] = [
    (Breakage("revert 1 of 2", "the formatter fix passes in a clean worktree, but an "
              "untracked file keeps the step failing", ("ruff", "format", "--check", "."),
              "rolled back"), _format_that_only_a_clean_tree_passes),
    (Breakage("revert 2 of 2", "the same with the lint fix, in the same step",
              ("ruff", "check", "."), "rolled back"), _lint_that_only_a_clean_tree_passes),
    (Breakage("during cooldown", "a SAFE fix while the breaker is open",
              ("sh", "scripts/ci.sh"), "escalated"), break_exec_bit),
]


def _notifications(path: Path, offset: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        fh.seek(offset)
        lines = fh.read().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def run_scene(demo: Demo, root: Path) -> Scene:
    """Raises what Demo.run_one raises (engines down)."""
    create_sample(root)
    demo.log(f"guardrails: second sample repository {root}, workflow {WORKFLOW}/{STEP}")
    path = demo.settings.home / "notifications.jsonl"
    offset = path.stat().st_size if path.exists() else 0
    guard = ExecutionGuard(demo.client, demo.settings,
                           audit=alerting_audit(demo.settings, demo.client))
    scene = Scene()
    for breakage, introduce in ROUNDS:
        introduce(root)
        demo.log(f"- {breakage.name}: {breakage.what}")
        row = demo.run_one(root, breakage, Workflow(id=WORKFLOW, run_id="1", phase="ci",
                                                   step=STEP))
        if row.failed:
            guard.on_step_result(WORKFLOW, STEP, ok=False, kind=row.category or "unknown",
                                 event_id=row.error_id)
        demo.log(f"  -> {row.status or 'no outcome'} ({row.seconds:.1f}s)")
        scene.rows.append(row)
    scene.changes = [n for n in _notifications(path, offset)
                     if n.get("kind") in ("breaker", "lifecycle", "execution")]
    return scene
