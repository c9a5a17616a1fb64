"""Exactly what applying a fix will run or change, for every approval surface
(``heal apply --dry-run``, ``GET /api/approvals``, the dashboard)."""

from __future__ import annotations

import shlex
from typing import Any

from pipeline.spelling import spelled

MAX_DIFF_CHARS = 20_000


def will_run(fix: dict[str, Any] | None) -> dict[str, Any]:
    """``{"argv": [...]}`` for a command, ``{"diff": "..."}`` for a diff, ``{"steps": [...]}``
    (each with its argv or built-in action) for a playbook, ``{}`` otherwise."""
    fix = fix or {}
    raw = fix.get("rendered")
    rendered: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = fix.get("kind")
    if kind == "command":
        plan: dict[str, Any] = {"argv": [str(a) for a in rendered.get("argv") or []]}
        if rendered.get("manifest_diff"):  # the durable half of a package install
            plan["manifest_diff"] = str(rendered["manifest_diff"])[:MAX_DIFF_CHARS]
        return plan
    if kind == "diff":
        return {"diff": str(rendered.get("diff", ""))[:MAX_DIFF_CHARS]}
    if kind == "playbook":
        steps = []
        for phase, group in (rendered.get("steps") or {}).items():
            for step in group or []:
                if not isinstance(step, dict):
                    continue
                item: dict[str, Any] = {"phase": phase, "name": step.get("name", "")}
                if "argv" in step:
                    item["argv"] = [str(a) for a in step.get("argv") or []]
                else:
                    item["action"] = step.get("action", "")
                    item["args"] = step.get("args") or {}
                steps.append(item)
        return {"steps": steps}
    return {}


def describe_run(fix: dict[str, Any] | None) -> list[str]:
    """The same as text lines (argv shell-quoted, so what is shown is what runs)."""
    plan = will_run(fix)
    if "argv" in plan:
        lines = [f"  runs: {shlex.join(plan['argv'])}"]
        if "manifest_diff" in plan:
            lines += ["  then declares the dependency (left uncommitted for review):",
                      *("    " + line for line in plan["manifest_diff"].splitlines())]
        return lines
    if "diff" in plan:
        return ["  applies this diff:", *("    " + line for line in plan["diff"].splitlines())]
    lines = []
    for step in plan.get("steps", []):
        args = step.get("args")
        what = (shlex.join(step["argv"]) if "argv" in step
                else f"{step.get('action')}" + (f" {spelled(args)}" if args else ""))
        lines.append(f"  {step['phase']}: {step['name']}: {what}")
    return lines
