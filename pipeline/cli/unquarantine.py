"""``heal unquarantine FP``: let a quarantined fix be tried again (it restarts as DRAFT and
must pass validation before it is ever applied)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import AuditLog


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "unquarantine", help="reset the quarantined fixes of a fingerprint (or one fix id)")
    parser.add_argument("target", metavar="FP", help="fingerprint, or a fix id")
    parser.add_argument("--reason", default="heal unquarantine", help="recorded in the audit log")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storage.lifecycle import LifecycleStore

    settings = Settings.from_env()
    db = open_database(settings)
    try:
        transitions = LifecycleStore(db).unquarantine(args.target)
        audit = AuditLog(settings, db=db)
        for t in transitions:
            audit.append("lifecycle.transition", f"{t.fingerprint}/{t.fix_id}",
                         {"from": t.src.value, "to": t.dst.value, "reason": args.reason})
    finally:
        db.close()
    if not transitions:
        print(f"nothing quarantined for {args.target}")
        return 1
    for t in transitions:
        print(f"{t.fingerprint} {t.fix_id}: {t.src} -> {t.dst} (must pass validation again)")
    return 0
