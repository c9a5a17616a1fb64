"""``heal unquarantine FP``: let a quarantined fix be tried again (it restarts as DRAFT and
must pass validation before it is ever applied). ``heal unquarantine --workflow NAME`` puts a
QUARANTINED (or DEGRADED) workflow back to RUNNING."""

from __future__ import annotations

import argparse
import re
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.guardrails._connect import connect_redis, open_database
from pipeline.guardrails.actor import acting, by_whom
from pipeline.guardrails.audit import AuditLog

#: a fingerprint's hex digits alone (``fp-vN:`` left out), or a prefix of them
_HEX = re.compile(r"[0-9a-fA-F]{1,16}")


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
    with acting("heal unquarantine"):  # its audit records say who lifted it
        if args.workflow:
            return _workflow(settings, args.workflow, args.reason, args.json)
        return _fixes(settings, args.target, args.reason, args.json)


def _workflow(settings: Settings, given: str, reason: str, as_json: bool = False) -> int:
    from pipeline.console import dump_json, visible
    from pipeline.guardrails.execution import ExecutionGuard, WorkflowState

    guard = ExecutionGuard(connect_redis(settings), settings)
    workflow = _named(guard, given)
    if workflow is None:  # no state of it: never seen here, or lifted already
        if as_json:
            dump_json({"workflow": given, "from": None, "to": None})
        else:
            print(f"workflow {visible(given)} is unknown here (no state is recorded for it: "
                  "never seen, or lifted already): nothing to lift; `heal status` lists the "
                  "DEGRADED or QUARANTINED workflows and the command to lift each")
        return 1
    state, _ = guard.state(workflow)
    if state == WorkflowState.RUNNING:
        if as_json:
            dump_json({"workflow": workflow, "from": str(state), "to": str(state)})
        else:
            print(f"workflow {visible(workflow)} is RUNNING: nothing to lift")
        return 1
    # audited first: no change without its record (a full HEAL_HOME stops it here)
    guard.audit.append("execution.transition", workflow,
                       {"from": state.value, "to": "RUNNING", "reason": reason})
    guard.reset(workflow)
    if as_json:
        dump_json({"workflow": workflow, "from": str(state), "to": "RUNNING"})
    else:
        print(f"workflow {visible(workflow)}: {state} -> RUNNING")
    return 0


def _named(guard: Any, given: str) -> str | None:
    """The workflow ``given`` names: itself when a state is recorded for it, else the id as
    its events carry it (cut to 1 KiB, redacted) when a state is recorded for that, else the
    one whose visible form (as ``heal status`` shows an id with control characters,
    ``wf\\x1b]0;T\\x07``) it is; None when it names none.

    Raises UsageError when the visible form is that of several workflows."""
    from pipeline.console import shell_quote, visible
    from pipeline.events import carried_field

    if guard.known(given):
        return given
    # the id as its events carry it (cut to 1 KiB, redacted): the name its state is kept
    # under (pipeline.guardrails.execution.published_workflow_name), so the caller's own
    # id (the hooks' workflow_id, HEAL_WORKFLOW) lifts it too
    carried = carried_field(given)
    if carried != given and guard.known(carried):
        return carried
    shown = [str(w["workflow"]) for w in guard.workflows()
             if str(w["workflow"]) != given and visible(str(w["workflow"])) == given]
    if len(shown) > 1:
        raise UsageError(f"--workflow {visible(given)} is how several workflows are shown ("
                         + ", ".join(shell_quote(w) for w in shown)
                         + "): give the one meant in the shell quoting heal status prints, "
                         "e.g. --workflow " + shell_quote(shown[0]))
    return shown[0] if shown else None


def _fixes(settings: Settings, target: str, reason: str, as_json: bool = False) -> int:
    from storage.lifecycle import LifecycleStore

    target = target.strip()
    if not target:
        raise UsageError("heal unquarantine: give a fingerprint (or a unique prefix of one, as "
                         "heal explain reads it) or a fix id")
    db = open_database(settings)
    try:
        store = LifecycleStore(db)
        # the transitions' own reason (heal explain's lifecycle section) says who, too
        named, transitions, held = _lift(db, store, target, by_whom(reason))
        _audit_or_undo(AuditLog(settings, db=db), store, transitions, reason)
    finally:
        db.close()
    if as_json:
        from pipeline.console import dump_json

        dump_json({"target": named, "transitions": [
            {"fingerprint": t.fingerprint, "fix_id": t.fix_id, "from": str(t.src),
             "to": str(t.dst)} for t in transitions]})
        return 0 if transitions else 1
    if not transitions:
        given = "" if named == target else f" (from {target!r})"
        print(f"nothing quarantined for {named}{given}: {held}")
        return 1
    for t in transitions:
        print(f"{t.fingerprint} {t.fix_id}: {t.src} -> {t.dst} (must pass validation again)")
    return 0


def _audit_or_undo(audit: Any, store: Any, transitions: list[Any], reason: str) -> None:
    """Audit each lifted pair; when a record cannot be written (a full HEAL_HOME), put the
    pairs not yet audited back in QUARANTINED and raise: no change stands without its audit
    record.

    Raises: AuditError (those lifts undone), DatabaseUnavailable."""
    from pipeline.guardrails.audit import AuditError

    done = 0
    try:
        for t in transitions:
            audit.append("lifecycle.transition", f"{t.fingerprint}/{t.fix_id}",
                         {"from": t.src.value, "to": t.dst.value, "reason": reason})
            done += 1
    except AuditError:
        for t in transitions[done:]:
            store.quarantine(t.fingerprint, t.fix_id,
                             "heal unquarantine undone: the audit log could not be written")
        raise


def _lift(db: Any, store: Any, target: str,
          reason: str = "heal unquarantine") -> tuple[str, list[Any], str]:
    """(what ``target`` names, the transitions made, why nothing was when none was).

    ``target`` is a fix id (every quarantined pair of it), or a fingerprint read as ``heal
    explain`` and ``heal ignore`` read it (a unique prefix, ``fp-v8:`` optional; a coarse one
    stands for its fine ones). A fingerprint with no quarantined pair of its own gets back the
    fixes withheld from it by their QUARANTINED state (quarantined through another
    fingerprint): every pair of those is reset, since that state is what blocks it.

    Raises: UsageError (an ambiguous prefix; no fingerprint or fix of that name).
    """
    from pipeline.cli.fpargs import read
    from pipeline.cli.ignore import resolve_fingerprint
    from pipeline.console import visible
    from storage.reports import ReportStore

    transitions = list(store.unquarantine(target, reason))  # a name recorded as it is
    if transitions:
        return target, transitions, ""
    target = read(target, "heal unquarantine", or_id=True)  # fp-... must be one: exit 2
    if not target.startswith("fp-") and store.knows_fix(target):
        return target, [], f"no pair of fix {target} is QUARANTINED"
    if not target.startswith("fp-") and not _HEX.fullmatch(target):
        raise UsageError(f"heal unquarantine: {visible(target)!r} is no fingerprint heal has "
                         "seen (fp-vN:<hex digits>, or the hex digits alone) nor a fix id heal "
                         "knows; heal explain FP shows a fingerprint's fixes and their ids")
    fingerprint = resolve_fingerprint(db, target, "heal unquarantine")
    reports = ReportStore(db)
    fines = [fingerprint]
    if dict(reports.resolve(fingerprint)).get(fingerprint) == "coarse":
        fines += reports.fines_of_coarse(fingerprint)
    for fine in dict.fromkeys(fines):
        if fine != target:  # (tried above)
            transitions += store.unquarantine(fine, reason)
    if transitions:
        return fingerprint, transitions, ""
    for fix_id in {f for fine in fines for f in store.quarantined_offers(fine)}:
        transitions += store.unquarantine(fix_id, reason)
    return fingerprint, transitions, "no fix of it is QUARANTINED"
