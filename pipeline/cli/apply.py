"""``heal apply ID [--force] [--dry-run]``: apply a verified suggestion.

ID is an error id (that error's suggestion), or a fix id (a pattern id) when exactly one
suggestion of that fix (of one fix of that pattern) waits: with several, heal refuses and
lists them by error id, because they may run different argv (another error's package name,
say). What will run (argv, diff or steps) is always shown first. Nothing waiting is exit 1
(the work found nothing to do), with the list of what is waiting.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import replace
from typing import Any

from pipeline.config import Settings
from pipeline.console import visible
from pipeline.errors import HealError, UsageError
from pipeline.events import VerdictEvent


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apply", help="apply a suggested (already verified) fix",
        description="Apply the verified suggestion of ID (an error id; or a fix id such as "
                    "format.ruff_format/fix, or its pattern id format.ruff_format, when only "
                    "one suggestion of it waits) to its repository; what will run is shown "
                    "first. The verified "
                    "commit is brought onto the working branch and the failing step re-run; "
                    "it is reverted when the step still fails.")
    parser.add_argument("fix_id", metavar="ID",
                        help="an error id, or a fix/pattern id when only one suggestion waits")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be applied and change nothing")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object instead of text")
    parser.add_argument("--force", action="store_true",
                        help="apply even when the circuit breaker is open or the change "
                             "window in heal.toml is closed")
    parser.set_defaults(func=run)


class NothingWaiting(HealError):
    """No verified suggestion waits under that name (exit 1: nothing to do, not bad usage)."""


def _waiting_list(store: Any) -> str:
    rows = store.waiting_suggestions()
    if not rows:
        return "nothing is waiting to be applied (`heal issues list` shows unmatched errors)"
    lines = [f"  {r['fix_id']}  (error {r['error_id']})" for r in rows[:10]]
    more = f"\n  ... and {len(rows) - 10} more" if len(rows) > 10 else ""
    return "waiting to be applied:\n" + "\n".join(lines) + more


def find_suggestion(store: Any, name: str) -> dict[str, Any]:
    """The one suggestion ``name`` means: an error id; a fix id with one suggestion waiting;
    a pattern id with one fix waiting (and one suggestion of it).

    Raises: UsageError (several suggestions or fixes: they are listed), NothingWaiting.
    """
    pending = [r for r in store.pending_suggestions(name) if r.get("verdict")]
    exact = [r for r in pending if r.get("id") == name]
    if exact:
        return dict(exact[0])
    if not pending and "/" not in name:
        fixes = sorted({str(r["fix_id"]) for r in store.waiting_suggestions(500)
                        if str(r["fix_id"]).startswith(name + "/")})
        if len(fixes) > 1:
            raise UsageError(f"pattern {name!r} has {len(fixes)} fixes waiting; name one: "
                             + ", ".join(fixes))
        if fixes:
            pending = [r for r in store.pending_suggestions(fixes[0]) if r.get("verdict")]
    if not pending:
        decided = store.decided_suggestion(name)
        if decided is not None:
            raise NothingWaiting(_already_decided(name, decided))
        raise NothingWaiting(f"no verified suggestion waiting for {name!r}; "
                             + _waiting_list(store))
    if len(pending) > 1:
        from pipeline.apply.preview import will_run

        listed = "\n".join(f"  heal apply {r['id']}    # {_summary(will_run(r.get('fix')))}"
                           for r in pending[:20])
        raise UsageError(f"{len(pending)} suggestions of fix {name!r} are waiting and may "
                         f"run different commands; name one by its error id:\n{listed}")
    return dict(pending[0])


def _already_decided(name: str, decided: dict[str, Any]) -> str:
    """What ``GET /api/approvals`` answers (409 already decided), with when and which."""
    when: Any = decided.get("decided_at")
    at = when.isoformat(timespec="seconds") if isinstance(when, dt.datetime) else str(when)
    which = (f"the suggestion of error {decided['error_id']}" if decided["error_id"] != name
             else f"error {name}'s suggestion")
    return (f"{name!r} was already decided: {decided['status']} (at {at}; "
            f"{which}, fix {decided['fix_id']}); nothing is waiting to be applied for it")


def _summary(plan: dict[str, Any]) -> str:
    import shlex

    if "argv" in plan:
        return shlex.join(plan["argv"])[:160]
    if "diff" in plan:
        return f"a diff of {len(plan['diff'].splitlines())} lines"
    return f"{len(plan.get('steps', []))} playbook step(s)"


def describe(verdict: VerdictEvent) -> str:
    from pipeline.apply.preview import describe_run

    fix = verdict.fix or {}
    lines = [f"fix {fix.get('id')} ({fix.get('kind')}, {fix.get('category')}) for error "
             f"{verdict.error_id}", f"  repository: {verdict.error.repo.path}",
             f"  failing command: {' '.join(verdict.error.command) or '-'}",
             f"  verdict: {verdict.decision}: {verdict.reason}"]
    if verdict.commit:
        lines.append(f"  verified commit {verdict.commit[:12]} on branch {verdict.branch} "
                     "(to be brought onto the working branch)")
    lines += describe_run(fix)
    # the error's command, repository and the fix's rendered arguments are event-derived:
    # each line visible, so what runs is read as it is (no escape sequence, no bidi control)
    return "\n".join(visible(line) for line in lines)


def _guard(settings: Settings, client: Any, verdict: VerdictEvent) -> None:
    from pipeline.policy import policy_for
    from pipeline.validate.validator import repo_root

    probe_root = repo_root(verdict.error)
    policy = policy_for(probe_root).current() if probe_root is not None else None
    if policy is not None and not policy.window_open():
        raise HealError("outside every change window in heal.toml; use --force to apply now")
    from pipeline.guardrails.breaker import CircuitBreaker, error_scope
    from pipeline.trust.operator import operator_config

    # the shared breaker's thresholds: the operator's [breaker], never a repository's
    config = operator_config(settings).limits.breaker()
    ok, reason = CircuitBreaker(client, settings, config).allow(
        *error_scope(verdict.error), str((verdict.fix or {}).get("category", "SAFE")))
    if not ok:
        raise HealError(f"circuit breaker refuses: {reason}; use --force to apply anyway")


def run(args: argparse.Namespace) -> int:
    from storage.attempts import AttemptStore
    from storage.engines import open_database

    if not args.fix_id.strip():  # bad usage, before any engine is started
        raise UsageError("heal apply: name what to apply: an error id, or a fix id or pattern "
                         "id when one suggestion of it waits (heal apply with an unknown id "
                         "lists what is waiting)")
    from pipeline.guardrails.actor import acting

    settings = Settings.from_env()
    db = open_database(settings)
    try:
        # a person's apply: its audit records (apply.intent, apply, the lifecycle transitions
        # it makes) say who, and that --force overrode the breaker and the change windows
        with acting("heal apply", force=bool(args.force)):
            return _apply(args, settings, AttemptStore(db))
    finally:
        db.close()


def _apply(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from pipeline.apply.applier import Applier, settle_outcomes
    from pipeline.apply.decision_lock import deciding, direct
    from storage.engines import connect_redis

    row = find_suggestion(store, args.fix_id)
    verdict = VerdictEvent.decode(row["verdict"])
    as_json = bool(getattr(args, "json", False))
    if not as_json:
        print(describe(verdict))
    if args.dry_run:
        _result(as_json, verdict, "dry_run", "dry run: nothing changed")
        return 0
    client = connect_redis(settings)
    if not args.force:
        _guard(settings, client, verdict)
    # an approve or reject through heal serve (or another heal apply) at once must not decide
    # too: one holds the suggestion's lock and records; the other is told (exit 1)
    with deciding(settings, verdict.error_id, direct(client, settings.prefix)):
        _still_waiting(store, verdict.error_id)  # re-read under the lock
        outcome = Applier(settings, client, store).apply_suggested(
            replace(verdict, decision="apply"))
    _result(as_json, verdict, outcome.status, outcome.detail, outcome.commit)
    settle_outcomes(settings, client)  # statistics, explain, metrics and export see it now
    return 0 if outcome.status == "applied" else 1


def _still_waiting(store: Any, error_id: str) -> None:
    """Raises NothingWaiting when the suggestion was decided since it was found."""
    result = store.apply_result(error_id)
    if result is not None and result.get("status") != "suggested":
        decided = store.decided_suggestion(error_id)
        raise NothingWaiting(_already_decided(error_id, decided) if decided is not None
                             else f"{error_id!r} was already decided: {result.get('status')}")


def _result(as_json: bool, verdict: VerdictEvent, status: str, detail: str,
            commit: str = "") -> None:
    if not as_json:
        # a detail that starts with its status already ("flaky: ...") is not said twice
        said = status == "dry_run" or detail.startswith(f"{status}:")
        print(detail if said else f"{status}: {detail}")
        return
    from pipeline.console import dump_json

    fix = verdict.fix or {}
    from pipeline.apply.preview import will_run

    dump_json({"status": status, "detail": detail, "error_id": verdict.error_id,
               "fix": {k: fix.get(k) for k in ("id", "kind", "category")},
               "will_run": will_run(fix),
               "repository": verdict.error.repo.path, "verified_commit": verdict.commit,
               "branch": verdict.branch, "commit": commit})
