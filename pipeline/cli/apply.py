"""``heal apply ID [--force] [--dry-run]``: apply a verified suggestion.

ID is an error id (that error's suggestion), or a fix id when exactly one suggestion of that
fix waits: with several, heal refuses and lists them, because they may run different argv
(another error's package name, say). What will run is always shown first.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from pipeline.config import Settings
from pipeline.errors import HealError, UsageError
from pipeline.events import VerdictEvent


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apply", help="apply a suggested (already verified) fix",
        description="Apply the verified suggestion of ID (an error id, or a fix id such as "
                    "format.ruff_format when only one suggestion of it waits) to its "
                    "repository; what will run is shown first: the verified "
                    "commit is brought onto the working branch and the failing step re-run; "
                    "it is reverted when the step still fails.")
    parser.add_argument("fix_id", metavar="ID",
                        help="an error id, or a fix id when only one suggestion of it waits")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be applied and change nothing")
    parser.add_argument("--force", action="store_true",
                        help="apply even when the circuit breaker is open or the change "
                             "window in heal.toml is closed")
    parser.set_defaults(func=run)


def describe(verdict: VerdictEvent) -> str:
    from pipeline.apply.preview import describe_run

    fix = verdict.fix or {}
    lines = [f"fix {fix.get('id')} ({fix.get('kind')}, {fix.get('category')}) for error "
             f"{verdict.error_id}", f"  repository: {verdict.error.repo.path}",
             f"  failing command: {' '.join(verdict.error.command) or '-'}",
             f"  verdict: {verdict.decision}: {verdict.reason}"]
    if verdict.commit:
        lines.append(f"  verified commit {verdict.commit[:12]} on branch {verdict.branch} "
                     "(brought onto the working branch)")
    lines += describe_run(fix)
    return "\n".join(lines)


def _guard(settings: Settings, client: Any, verdict: VerdictEvent) -> None:
    from pipeline.policy import policy_for
    from pipeline.validate.validator import repo_root

    probe_root = repo_root(verdict.error)
    if probe_root is not None and not policy_for(probe_root).current().window_open():
        raise HealError("outside every change window in heal.toml; use --force to apply now")
    from pipeline.guardrails.breaker import CircuitBreaker

    wf = verdict.error.workflow
    ok, reason = CircuitBreaker(client, settings).allow(
        wf.step or None, wf.id or None, str((verdict.fix or {}).get("category", "SAFE")))
    if not ok:
        raise HealError(f"circuit breaker refuses: {reason}; use --force to apply anyway")


def _pick(store: Any, wanted: str) -> dict[str, Any]:
    """The one suggestion ``wanted`` names (an error id, or a fix id with one suggestion).

    Raises:
        UsageError: nothing waits, or a fix id names several suggestions (listed).
    """
    from pipeline.apply.preview import will_run

    pending = [r for r in store.pending_suggestions(wanted) if r.get("verdict")]
    exact = [r for r in pending if r.get("id") == wanted]
    if exact:
        return dict(exact[0])
    if not pending:
        raise UsageError(f"no verified suggestion waiting for {wanted!r}; "
                         "`heal explain FP` shows what was decided")
    if len(pending) > 1:
        listed = "\n".join(f"  heal apply {r['id']}    # {_summary(will_run(r.get('fix')))}"
                           for r in pending[:20])
        raise UsageError(f"{len(pending)} suggestions of fix {wanted!r} are waiting and may "
                         f"run different commands; name one by its error id:\n{listed}")
    return dict(pending[0])


def _summary(plan: dict[str, Any]) -> str:
    import shlex

    if "argv" in plan:
        return shlex.join(plan["argv"])[:160]
    if "diff" in plan:
        return f"a diff of {len(plan['diff'].splitlines())} lines"
    return f"{len(plan.get('steps', []))} playbook step(s)"


def run(args: argparse.Namespace) -> int:
    from storage.attempts import AttemptStore
    from storage.engines import open_database

    settings = Settings.from_env()
    db = open_database(settings)
    try:
        return _apply(args, settings, AttemptStore(db))
    finally:
        db.close()


def _apply(args: argparse.Namespace, settings: Settings, store: Any) -> int:
    from pipeline.apply.applier import Applier
    from storage.engines import connect_redis

    row = _pick(store, args.fix_id)
    verdict = VerdictEvent.decode(row["verdict"])
    print(describe(verdict))
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    client = connect_redis(settings)
    if not args.force:
        _guard(settings, client, verdict)
    outcome = Applier(settings, client, store).apply_suggested(replace(verdict, decision="apply"))
    print(f"{outcome.status}: {outcome.detail}")
    return 0 if outcome.status == "applied" else 1
