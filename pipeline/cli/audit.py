"""``heal audit verify``: check the hash chain of the audit log (file and PostgreSQL)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import EngineError
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import FILE_NAME, Verification, verify_database, verify_file


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="the hash-chained audit log")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verify = verbs.add_parser("verify", help="detect tampering; exit 1 at the first bad record")
    verify.add_argument("--file-only", action="store_true",
                        help="check only $HEAL_HOME/audit.jsonl, not PostgreSQL")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=run_verify)


def _describe(name: str, result: Verification) -> str:
    if result.ok:
        return f"{name}: ok, {result.records} record(s), chain intact"
    return (f"{name}: TAMPERED at record {result.bad_at} (after {result.records} good): "
            f"{result.reason}\n  {result.bad_record[:300]}")


def run_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    results: dict[str, Verification] = {
        str(settings.home / FILE_NAME): verify_file(settings.home / FILE_NAME)}
    skipped = ""
    if not args.file_only:
        try:
            db = open_database(settings)
        except EngineError as exc:  # the file alone still proves something
            skipped = f"postgres: skipped ({exc})"
        except Exception as exc:  # noqa: BLE001 - storage layer missing or misconfigured
            skipped = f"postgres: skipped ({exc})"
        else:
            try:
                results["postgres:audit_log"] = verify_database(db)
            finally:
                db.close()
    ok = all(r.ok for r in results.values())
    if args.json:
        dump_json({"ok": ok, "skipped": skipped, "logs": {
            name: {"ok": r.ok, "records": r.records, "bad_at": r.bad_at, "reason": r.reason,
                   "bad_record": r.bad_record} for name, r in results.items()}})
    else:
        for name, result in results.items():
            print(_describe(name, result))
        if skipped:
            print(skipped)
    return 0 if ok else 1
