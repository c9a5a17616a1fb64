"""``heal ignore FP``: permanently ignore a fingerprint (``--undo`` to stop ignoring it); its
open groups in the issue queue are marked ``ignored`` (reopened by ``--undo``), as ``heal
issues review``'s ``n`` does."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.cli.fpargs import in_advance, read
from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.actor import acting
from pipeline.guardrails.audit import AuditLog


def register(sub: Any) -> None:
    parser = sub.add_parser("ignore", help="permanently ignore a fingerprint")
    parser.add_argument("fingerprint", metavar="FP",
                        help="fp-v8:<16 hex digits>, a unique prefix, or the hex digits alone")
    parser.add_argument("--undo", action="store_true", help="stop ignoring it")
    parser.add_argument("--reason", default="", help="recorded with it and in the audit log")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storage.lifecycle import LifecycleStore

    if not args.fingerprint.strip():
        raise UsageError("heal ignore: give the fingerprint to ignore (see heal fingerprint)")
    given = read(args.fingerprint, "heal ignore")  # a typo exits 2 before anything opens
    settings = Settings.from_env()
    db = open_database(settings)
    try:
        fingerprint = resolve_fingerprint(db, given)
        reason = args.reason or ("heal ignore --undo" if args.undo else "heal ignore")
        # audited first: when the record cannot be written (a full HEAL_HOME) nothing changes,
        # as the AuditError says
        with acting("heal ignore --undo" if args.undo else "heal ignore"):
            AuditLog(settings, db=db).append(
                "fingerprint.ignore", fingerprint, {"ignored": not args.undo, "reason": reason})
        LifecycleStore(db).set_ignored(fingerprint, not args.undo, reason)
    finally:
        db.close()
    if args.json:
        from pipeline.console import dump_json

        dump_json({"fingerprint": fingerprint, "ignored": not args.undo, "reason": reason})
    else:
        told = "" if fingerprint == args.fingerprint.strip() else f" (from {given!r})"
        print(f"{fingerprint}: {'no longer ignored' if args.undo else 'ignored'}{told}")
    return 0


def resolve_fingerprint(db: Any, text: str, command: str = "heal ignore") -> str:
    """The fingerprint ``text`` names, as ``heal explain`` reads it: a known one it equals or
    is the unique prefix of (``fp-v8:`` may be left out); else, to ignore one in advance,
    ``text`` itself when it is a whole fingerprint of the current version (a bare 16-digit
    hash gets its ``fp-vN:``): :func:`pipeline.cli.fpargs.in_advance`.

    Raises:
        UsageError: several known fingerprints start with ``text``, or none does and it has
            no fingerprint's form (before: stored as given, "ignored", and nothing was).
    """
    from storage.reports import ReportStore

    text = read(text, command)
    found = ReportStore(db).resolve(text)
    if len(found) == 1:
        return found[0][0]
    if len(found) > 1:
        names = "\n  ".join(f"{fp} ({level})" for fp, level in found)
        raise UsageError(f"{text!r} matches {len(found)} fingerprints; give more characters:"
                         f"\n  {names}")
    return in_advance(text, command)
