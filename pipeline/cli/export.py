"""``heal export [--format yaml|json]``: every pattern, its fixes and their statistics.
``heal export --pack FILE``: what this installation learned, as a versioned YAML pack that
``heal import`` loads elsewhere (see :mod:`pipeline.learn.packs`).

Reads PostgreSQL; with ``--offline`` (or PostgreSQL unreachable, said on stderr) it exports
the seeded catalog without statistics.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from pipeline.cliargs import Once
from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import DatabaseUnavailable, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="dump patterns, fixes and their statistics", description=__doc__)
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml", action=Once,
                        help="yaml (default, what heal import reads) or json")
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument("--offline", action="store_true",
                        help="export the seeded catalog without contacting PostgreSQL")
    parser.add_argument("--pack", metavar="FILE", action=Once,
                        help="write the learned patterns and fixes as a YAML pack for heal "
                             "import (not with --format json or --offline)")
    parser.set_defaults(func=run)


def export_patterns(settings: Settings, offline: bool = False) -> dict[str, Any]:
    """Patterns with fixes and statistics from PostgreSQL (seeded first, idempotently)."""
    from pipeline.lookup.catalog import load_catalog

    catalog = load_catalog()
    if not offline:
        from storage.engines import open_database
        from storage.patterns import PatternRepository

        try:
            db = open_database(settings)
        except DatabaseUnavailable as exc:
            print(f"heal: warning: {exc}; exporting the seeds without statistics",
                  file=sys.stderr)
        else:
            try:
                repo = PatternRepository(db)
                repo.seed(catalog.patterns.values())
                return {"source": "postgres", "patterns": repo.export()}
            finally:
                db.close()
    return {"source": "seeds", "patterns": [p.to_dict() for p in catalog.patterns.values()]}


def export_pack(settings: Settings, path: str) -> int:
    from pathlib import Path

    from pipeline.guardrails.actor import who_am_i
    from pipeline.learn.packs import build_pack, fix_count, write_pack
    from storage.engines import open_database
    from storage.learned import LearnedRepository
    from storage.reports import REVIEW

    db = open_database(settings)
    try:
        repo = LearnedRepository(db)
        rows = repo.taught(every_fix=True)
        stats = repo.fix_statistics()
    finally:
        db.close()
    # ids under review. are heal issues review's placeholders, which heal import refuses: a
    # row held under one (an import from before that refusal) is left out, and said
    left_out = sorted({str(r["id"]) for r in rows if str(r["id"]).startswith(REVIEW)})
    pack = build_pack([r for r in rows if not str(r["id"]).startswith(REVIEW)], stats,
                      who_am_i())
    write_pack(Path(path), pack)
    if left_out:
        print(f"heal: note: left out {len(left_out)} pattern(s) under {REVIEW} "
              f"({', '.join(left_out[:5])}{', …' if len(left_out) > 5 else ''}): ids under "
              f"{REVIEW} belong to heal issues review, and heal import refuses them",
              file=sys.stderr)
    print(f"wrote {len(pack['patterns'])} learned pattern(s) with {fix_count(pack)} fix(es) "
          f"to {path}", file=sys.stderr)
    return 0


def check_pack_args(args: argparse.Namespace) -> None:
    """``--pack FILE`` names a file and writes YAML from PostgreSQL: an empty name (which
    once dumped the whole catalog on stdout, exit 0), ``--format json``/``--json`` (once
    silently written as YAML) and ``--offline`` are refused.

    Raises UsageError: saying what to change."""
    if not args.pack.strip():
        raise UsageError("--pack '': give the file to write the pack to, e.g. "
                         "heal export --pack learned.yaml")
    if args.json or args.format != "yaml":
        raise UsageError(f"--pack {args.pack}: a pack is always YAML (what heal import "
                         "reads); drop --format json/--json, or use heal export --json for "
                         "the catalog as JSON")
    if args.offline:
        raise UsageError(f"--pack {args.pack}: a pack holds what this installation learned, "
                         "read from PostgreSQL; drop --offline")


def run(args: argparse.Namespace) -> int:
    if args.pack is not None:
        check_pack_args(args)
        return export_pack(Settings.from_env(), args.pack)
    data = export_patterns(Settings.from_env(), offline=args.offline)
    if args.json or args.format == "json":
        dump_json(data)
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return 0
