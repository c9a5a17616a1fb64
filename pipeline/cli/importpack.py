"""``heal import FILE``: load a pack (``heal export --pack`` wrote it, or a seed file).

Every imported fix starts DRAFT here whatever its state was elsewhere; a pattern whose id or
detection is already held here with a different fix, or whose fix id is held by another
pattern, is a conflict: listed, never merged (exit 1 when there was one; 2 for a file that is
not a valid pack). A pattern held with the same fix is already known: importing the same pack
again changes nothing and says so (exit 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="load a pack of patterns and fixes (all start DRAFT)",
                       description=__doc__)
    p.add_argument("file", help="the pack (YAML)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.guardrails.actor import who_am_i
    from pipeline.guardrails.audit import AuditLog
    from pipeline.learn.packs import PackImporter, read_pack
    from storage.engines import open_database

    path = Path(args.file)
    doc = read_pack(path)
    settings = Settings.from_env()
    db = open_database(settings)
    try:
        report = PackImporter(db, AuditLog(settings, db=db)).run(doc, path.name, who_am_i())
    finally:
        db.close()
    if args.json:
        dump_json(report.as_dict())
    else:
        for item in report.imported:
            print(f"imported {item['pattern_id']} with fix {item['fix_id']} (DRAFT)")
        for c in report.conflicts:
            print(f"conflict {c['pattern_id']}: {c['why']}")
        print(f"{len(report.imported)} imported (DRAFT), {len(report.known)} already known, "
              f"{len(report.conflicts)} conflict(s) not merged")
        if not report.imported and not report.conflicts:
            print("nothing changed: every pattern of the pack is held here with the same fixes")
    return 1 if report.conflicts else 0
