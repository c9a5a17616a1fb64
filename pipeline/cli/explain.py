"""``heal explain FP [--json]``: the whole story of a fingerprint (fine or coarse, or a unique
prefix): sample, normalization, lookup path, fixes and posteriors, judges, verification,
what was applied or why not, lifecycle history and the issue queue.

Exit 1 when nothing is recorded about it; 2 when a prefix names several fingerprints.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.config import Settings


def register(sub: Any) -> None:
    parser = sub.add_parser("explain", help="every decision heal made about a fingerprint")
    parser.add_argument("fingerprint", metavar="FP", help="fp-v1:... (fine or coarse) or a "
                        "unique prefix")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.operator.explain import explain
    from pipeline.operator.render_explain import render
    from storage.engines import open_database
    from storage.reports import ReportStore

    db = open_database(Settings.from_env())
    try:
        story = explain(ReportStore(db), args.fingerprint)
    finally:
        db.close()
    print(json.dumps(story, indent=2, default=str) if args.json else render(story))
    return 0
