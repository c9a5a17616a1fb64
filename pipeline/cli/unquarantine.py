"""``heal unquarantine FP``: let a quarantined fix be tried again (it restarts as DRAFT and
must pass validation before it is ever applied). ``heal unquarantine --workflow NAME`` puts a
QUARANTINED (or DEGRADED) workflow back to RUNNING."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.guardrails._connect import connect_redis, open_database
from pipeline.guardrails.audit import AuditLog


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "unquarantine",
        help="reset the quarantined fixes of a fingerprint (or fix id), or a workflow")
    parser.add_argument("target", metavar="FP", nargs="?", help="fingerprint, or a fix id")
    parser.add_argument("--workflow", metavar="NAME",
                        help="reset this workflow's execution state to RUNNING instead")
    parser.add_argument("--reason", default="heal unquarantine", help="recorded in the audit log")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.target) == bool(args.workflow):
        raise UsageError("heal unquarantine: give either a fingerprint (FP) or --workflow NAME")
    settings = Settings.from_env()
    if args.workflow:
        return _workflow(settings, args.workflow, args.reason, args.json)
    return _fixes(settings, args.target, args.reason, args.json)


def _workflow(settings: Settings, workflow: str, reason: str, as_json: bool = False) -> int:
    from pipeline.guardrails.execution import ExecutionGuard, WorkflowState

    guard = ExecutionGuard(connect_redis(settings), settings)
    state, _ = guard.state(workflow)
    if state == WorkflowState.RUNNING:  # (a name never seen is RUNNING too): nothing to lift
        if as_json:
            from pipeline.console import dump_json

            dump_json({"workflow": workflow, "from": str(state), "to": str(state)})
        else:
            print(f"workflow {workflow} is RUNNING: nothing to lift")
        return 1
    guard.reset(workflow)
    guard.audit.append("execution.transition", workflow,
                              {"from": state.value, "to": "RUNNING", "reason": reason})
    if as_json:
        from pipeline.console import dump_json

        dump_json({"workflow": workflow, "from": str(state), "to": "RUNNING"})
    else:
        print(f"workflow {workflow}: {state} -> RUNNING")
    return 0


def _fixes(settings: Settings, target: str, reason: str, as_json: bool = False) -> int:
    from storage.lifecycle import LifecycleStore

    db = open_database(settings)
    try:
        transitions = LifecycleStore(db).unquarantine(target)
        audit = AuditLog(settings, db=db)
        for t in transitions:
            audit.append("lifecycle.transition", f"{t.fingerprint}/{t.fix_id}",
                         {"from": t.src.value, "to": t.dst.value, "reason": reason})
    finally:
        db.close()
    if as_json:
        from pipeline.console import dump_json

        dump_json({"target": target, "transitions": [
            {"fingerprint": t.fingerprint, "fix_id": t.fix_id, "from": str(t.src),
             "to": str(t.dst)} for t in transitions]})
        return 0 if transitions else 1
    if not transitions:
        print(f"nothing quarantined for {target}")
        return 1
    for t in transitions:
        print(f"{t.fingerprint} {t.fix_id}: {t.src} -> {t.dst} (must pass validation again)")
    return 0
