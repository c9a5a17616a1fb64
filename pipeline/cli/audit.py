"""``heal audit verify``: check the hash chain of the audit log (file and PostgreSQL)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import EngineError
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import (
    FILE_NAME,
    Verification,
    audit_key,
    cross_check,
    file_log_id,
    verify_database,
    verify_file,
)


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


def _anchors(settings: Settings, db: Any, log_id: str) -> list[tuple[int, str]]:
    """The file's anchored heads: PostgreSQL's ``audit_anchor`` row and Redis' key."""
    heads: list[tuple[int, str]] = []
    if db is not None:
        try:
            row = db.fetch("SELECT seq, hash FROM audit_anchor WHERE log = $1", log_id)
        except Exception:  # noqa: BLE001 - a database migrated before the anchors existed
            row = []
        heads += [(int(r["seq"]), str(r["hash"])) for r in row]
    if settings.redis_url:
        import redis

        try:
            raw = redis.Redis.from_url(settings.redis_url).get(
                settings.key("audit", "head", log_id))
        except redis.RedisError:
            raw = None
        if raw:
            head = json.loads(raw)
            heads.append((int(head["seq"]), str(head["hash"])))
    return heads


def run_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    path = settings.home / FILE_NAME
    key = audit_key(settings)
    log_id = file_log_id(path)
    results: dict[str, Verification] = {}
    skipped = ""
    db = None
    if not args.file_only:
        try:
            db = open_database(settings)
        except EngineError as exc:  # the file alone still proves something
            skipped = f"postgres: skipped ({exc})"
        except Exception as exc:  # noqa: BLE001 - storage layer missing or misconfigured
            skipped = f"postgres: skipped ({exc})"
    try:
        heads = _anchors(settings, db, log_id)
        # the newest anchored head: a truncation below any witness is caught
        anchor = max(heads) if heads else None
        results[str(path)] = verify_file(path, key, anchor)
        if db is not None:
            table = verify_database(db)
            results["postgres:audit_log"] = table
            results["file vs table"] = cross_check(results[str(path)], table, log_id)
    finally:
        if db is not None:
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
