"""``heal breaker status|reset|open``: inspect and steer the shared circuit breaker."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.console import clip, dump_json, visible
from pipeline.errors import HealError
from pipeline.guardrails._connect import connect_redis
from pipeline.guardrails.actor import acting
from pipeline.guardrails.audit import AuditLog
from pipeline.guardrails.breaker import GLOBAL, CircuitBreaker, check_scope


def register(sub: Any) -> None:
    parser = sub.add_parser("breaker", help="circuit breaker: status, reset, open by hand")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser("status", help="state of every breaker scope")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)
    for verb, func, helptext in (
        ("reset", run_reset, "close a scope and clear its windows"),
        ("open", run_open, "force a scope open until reset"),
    ):
        p = verbs.add_parser(verb, help=helptext)
        p.add_argument("scope", nargs="?", default=GLOBAL,
                       help="global (default), workflow:NAME or step:WORKFLOW/STEP")
        p.add_argument("--reason", default=f"{verb} by hand", help="recorded in the audit log")
        p.set_defaults(func=func)


def _breaker() -> CircuitBreaker:
    settings = Settings.from_env()
    client = connect_redis(settings)
    from pipeline.trust.operator import operator_config

    return CircuitBreaker(client, settings, operator_config(settings).limits.breaker(),
                          audit=AuditLog(settings, redis_client=client))


def run_status(args: argparse.Namespace) -> int:
    status = _breaker().status()
    if args.json:
        dump_json(status)
        return 0
    print(f"breaker: {status['state']}")
    for name, scope in status["scopes"].items():
        line = (f"  {visible(name):<40} {scope['state']:<11} reverts {scope['reverts_in_window']}"
                f"/{scope['threshold']} calls {scope['calls_in_window']}")
        if "cooldown_remaining_s" in scope:
            line += f" cooldown {scope['cooldown_remaining_s']:.0f}s"
        if scope["reason"] and scope["state"] != "CLOSED":
            # the reason and who are what a person typed (--reason, HEAL_USER) or an older
            # heal recorded: shown visible, so no escape sequence or newline reaches the terminal
            by = f"; by {clip(visible(str(scope['by'])), 64)}" if scope.get("by") else ""
            line += f"  ({clip(visible(str(scope['reason'])), 200)}{by})"
        print(line)
    return 0


def run_reset(args: argparse.Namespace) -> int:
    check_scope(args.scope)
    breaker = _breaker()
    if not breaker.known(args.scope):
        # (resetting it would only add a scope no fix has ever been counted at)
        known = [name for name in breaker.status()["scopes"] if name != GLOBAL]
        hint = f"known scopes: {', '.join(known[:20])}" if known else "no scope but global"
        raise HealError(f"breaker scope {args.scope!r} is unknown ({hint}); "
                        "see `heal breaker status`")
    with acting("heal breaker reset"):
        t = breaker.reset(args.scope, args.reason)
    print(f"breaker {visible(t.scope)}: {t.src} -> {t.dst}")
    return 0


def run_open(args: argparse.Namespace) -> int:
    check_scope(args.scope)
    with acting("heal breaker open"):
        t = _breaker().force_open(args.scope, args.reason)
    print(f"breaker {visible(t.scope)}: {t.src} -> {t.dst} ({visible(t.reason)})")
    return 0
