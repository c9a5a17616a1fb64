"""``heal explain FP [--json]``: the whole story of a fingerprint (fine or coarse, or a unique
prefix): sample, normalization, lookup path, fixes and posteriors, judges, verification,
what was applied or why not, lifecycle history and the issue queue.

Exit 1 when nothing is recorded about it; 2 when a prefix names several fingerprints.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.console import dump_json, visible
from pipeline.errors import HealError


def register(sub: Any) -> None:
    parser = sub.add_parser("explain", help="every decision heal made about a fingerprint")
    parser.add_argument("fingerprint", metavar="FP", help="fp-v3:... (fine or coarse) or a "
                        "unique prefix")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _reader(settings: Settings, problems: list[str]) -> Any:
    """The outcome-stream reader, or None (and a problem noted) when Redis is unreachable:
    PostgreSQL still tells most of the story."""
    from pipeline.operator.explain import outcome_reader
    from storage.engines import connect_redis

    try:
        client = connect_redis(settings)
        client.ping()
    except HealError as exc:
        problems.append(f"outcome details from the stream not shown: {exc}")
        return None
    except redis.RedisError as exc:
        problems.append(f"outcome details from the stream not shown: Redis unreachable: {exc}")
        return None
    read = outcome_reader(client, settings)

    def guarded(fines: list[str]) -> dict[str, Any] | None:
        try:
            return read(fines)
        except HealError as exc:
            problems.append(f"outcome details from the stream not shown: {exc}")
            return None

    return guarded


def run(args: argparse.Namespace) -> int:
    from pipeline.operator.explain import explain
    from pipeline.operator.render_explain import render
    from storage.engines import open_database
    from storage.reports import ReportStore

    settings = Settings.from_env()
    problems: list[str] = []
    db = open_database(settings)
    try:
        story = explain(ReportStore(db), args.fingerprint, _reader(settings, problems))
    finally:
        db.close()
    story["problems"] = problems
    if args.json:
        dump_json(story)
    else:
        # (the story quotes the error's text: its control characters are shown, not sent)
        print("\n".join(visible(line) for line in render(story).split("\n")))
    for problem in problems:
        print(f"heal: warning: {problem}", file=sys.stderr)
    return 0
