"""Command and playbook fixes, step by step: each step with a timeout, validation after each
action, fallback steps when the primary ones fail, escalation when everything fails.

Steps are ``{"name", "argv", "timeout_s"}`` (argv, never a shell string) or
``{"name", "action", "args"}`` (a built-in from :mod:`pipeline.apply.actions`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.apply.actions import run_action
from pipeline.errors import FixError
from pipeline.validate.runner import run_argv, shell_with_error_text

DEFAULT_STEP_TIMEOUT_S = 60.0


@dataclass
class PlaybookResult:
    ok: bool
    detail: str
    steps: list[dict[str, Any]] = field(default_factory=list)


DIAGNOSIS_TRIES = 3


@dataclass(frozen=True)
class StepContext:
    root: Path
    params: dict[str, Any] = field(default_factory=dict)
    #: the failing command and where it ran: the ``rerun`` action runs it again
    rerun_argv: tuple[str, ...] = ()
    rerun_cwd: Path | None = None


def run_step(ctx: StepContext, step: dict[str, Any]) -> dict[str, Any]:
    """Run one step; the record says what happened (never raises for the step's sake)."""
    name = str(step.get("name") or step.get("action") or "step")
    root = ctx.root
    try:
        if step.get("action") == "rerun":
            if not ctx.rerun_argv:
                return {"name": name, "ok": True, "detail": "no failing command to re-run"}
            run = run_argv(list(ctx.rerun_argv), str(ctx.rerun_cwd or root),
                           float(step.get("timeout_s") or DEFAULT_STEP_TIMEOUT_S))
            return {"name": name, "ok": run["exit_code"] == 0,
                    "detail": f"re-run exit {run['exit_code']}", "tail": run["tail"][-500:]}
        if "action" in step:
            ok, detail = run_action(root, str(step["action"]), step.get("args") or {})
            return {"name": name, "ok": ok, "detail": detail}
        argv = [str(a) for a in step.get("argv") or []]
        if not argv or shell_with_error_text(argv, ctx.params):
            raise FixError(f"step {name!r} has no argv or passes error text to a shell: "
                           f"{argv!r}")
        run = run_argv(argv, str(root), float(step.get("timeout_s") or DEFAULT_STEP_TIMEOUT_S))
        return {"name": name, "ok": run["exit_code"] == 0, "exit_code": run["exit_code"],
                "detail": f"exit {run['exit_code']}" + (" (timeout)" if run["timed_out"] else ""),
                "tail": run["tail"][-500:]}
    except FixError as exc:
        return {"name": name, "ok": False, "detail": str(exc)}


class PlaybookRunner:
    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.log: list[dict[str, Any]] = []

    def _run(self, phase: str, step: dict[str, Any]) -> bool:
        record = {"phase": phase, **run_step(self.ctx, step)}
        self.log.append(record)
        return bool(record["ok"])

    def _diagnose(self, step: dict[str, Any]) -> bool:
        # a diagnosis such as "no git process running" can be briefly false; look again
        for attempt in range(DIAGNOSIS_TRIES):
            if self._run("diagnosis", step):
                return True
            if attempt + 1 < DIAGNOSIS_TRIES:
                time.sleep(0.5)
        return False

    def _validated(self, steps: list[dict[str, Any]]) -> bool:
        return all(self._run("validate", s) for s in steps) if steps else True

    def _try(self, phase: str, actions: list[dict[str, Any]],
             validate: list[dict[str, Any]]) -> bool:
        """Run ``actions`` one by one, validating after each; True once validation passes."""
        for step in actions:
            if not self._run(phase, step):
                return False
            if validate and self._validated(validate):
                return True
        return bool(actions) and self._validated(validate)

    def run(self, steps: dict[str, Any]) -> PlaybookResult:
        validate = list(steps.get("validate") or [])
        for step in steps.get("diagnosis") or []:
            if not self._diagnose(step):
                return PlaybookResult(False, f"diagnosis step {step.get('name')!r} failed: "
                                      "this playbook does not fit; escalated", self.log)
        if self._try("primary", list(steps.get("primary") or []), validate):
            return PlaybookResult(True, f"primary steps done{_and_validated(validate)}",
                                  self.log)
        fallback = list(steps.get("fallback") or [])
        if fallback and self._try("fallback", fallback, validate):
            return PlaybookResult(True, "primary failed; fallback steps done"
                                  f"{_and_validated(validate)}", self.log)
        failed = [s for s in self.log if not s["ok"]]
        why = f"{failed[-1]['name']}: {failed[-1]['detail']}" if failed else "validation failed"
        return PlaybookResult(False, f"every step failed or did not validate ({why}); "
                              "escalated", self.log)


def _and_validated(validate: list[dict[str, Any]]) -> str:
    """' and validated' only when the playbook has validation steps and they passed (with
    none, nothing validated the steps: the failing step's re-run does)."""
    return " and validated" if validate else ""
