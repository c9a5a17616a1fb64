"""``heal ignore FP``: permanently ignore a fingerprint (``--undo`` to stop ignoring it); its
open groups in the issue queue are marked ``ignored`` (reopened by ``--undo``), as ``heal
issues review``'s ``n`` does."""

from __future__ import annotations

import argparse
import re
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
        fingerprint = resolve_fingerprint(db, args.fingerprint)
        reason = args.reason or ("heal ignore --undo" if args.undo else "heal ignore")
        # audited first: when the record cannot be written (a full HEAL_HOME) nothing changes,
        # as the AuditError says
        AuditLog(settings, db=db).append(
            "fingerprint.ignore", fingerprint, {"ignored": not args.undo, "reason": reason})
        LifecycleStore(db).set_ignored(fingerprint, not args.undo, reason)
    finally:
        db.close()
    if args.json:
        from pipeline.console import dump_json

        dump_json({"fingerprint": fingerprint, "ignored": not args.undo, "reason": reason})
    else:
        given = "" if fingerprint == args.fingerprint.strip() else f" (from {args.fingerprint!r})"
        print(f"{fingerprint}: {'no longer ignored' if args.undo else 'ignored'}{given}")
    return 0


#: the hash part of a fingerprint (``fp-v7:<this>``)
_HASH = re.compile(r"[0-9a-f]{16}")


def resolve_fingerprint(db: Any, text: str) -> str:
    """The fingerprint ``text`` names, as ``heal explain`` reads it: a known one it equals or
    is the unique prefix of (``fp-v7:`` may be left out); else, to ignore one in advance,
    ``text`` itself when it has a fingerprint's form (``fp-...``, or a bare 16-digit hash,
    which gets the current ``fp-v7:``).

    Raises:
        UsageError: several known fingerprints start with ``text``, or none does and it has
            no fingerprint's form (before: stored as given, "ignored", and nothing was).
    """
    from pipeline.fingerprint.hashing import ALGORITHM_VERSION
    from storage.reports import ReportStore

    text = text.strip()
    found = ReportStore(db).resolve(text)
    if len(found) == 1:
        return found[0][0]
    if len(found) > 1:
        names = "\n  ".join(f"{fp} ({level})" for fp, level in found)
        raise UsageError(f"{text!r} matches {len(found)} fingerprints; give more characters:"
                         f"\n  {names}")
    if text.startswith("fp-"):
        return text
    if _HASH.fullmatch(text):
        return f"{ALGORITHM_VERSION}:{text}"
    raise UsageError(f"{text!r} is no fingerprint heal has seen, nor has a fingerprint's form "
                     f"({ALGORITHM_VERSION}:<16 hex digits>); find it with heal issues list, "
                     "heal explain or heal fingerprint FILE")
