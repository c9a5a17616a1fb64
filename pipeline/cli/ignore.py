"""``heal ignore FP``: permanently ignore a fingerprint (``--undo`` to stop ignoring it)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import AuditLog


def register(sub: Any) -> None:
    parser = sub.add_parser("ignore", help="permanently ignore a fingerprint")
    parser.add_argument("fingerprint", metavar="FP")
    parser.add_argument("--undo", action="store_true", help="stop ignoring it")
    parser.add_argument("--reason", default="", help="recorded with it and in the audit log")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storage.lifecycle import LifecycleStore

    if not args.fingerprint.strip():
        raise UsageError("heal ignore: give the fingerprint to ignore (see heal fingerprint)")
    settings = Settings.from_env()
    db = open_database(settings)
    try:
        reason = args.reason or ("heal ignore --undo" if args.undo else "heal ignore")
        LifecycleStore(db).set_ignored(args.fingerprint, not args.undo, reason)
        AuditLog(settings, db=db).append(
            "fingerprint.ignore", args.fingerprint, {"ignored": not args.undo, "reason": reason})
    finally:
        db.close()
    if args.json:
        from pipeline.console import dump_json

        dump_json({"fingerprint": args.fingerprint, "ignored": not args.undo, "reason": reason})
    else:
        print(f"{args.fingerprint}: {'no longer ignored' if args.undo else 'ignored'}")
    return 0
