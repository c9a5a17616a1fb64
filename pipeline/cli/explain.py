"""``heal explain FP [--json]``: the whole story of a fingerprint (fine or coarse, or a unique
prefix, or an error id such as the one ``heal run`` prints): sample, normalization, lookup
path, fixes and posteriors, judges, verification, what was applied or why not, lifecycle
history and the issue queue; for an event the pipeline dead-lettered, its dead letter.

``heal explain --dead [--limit N] [--json]`` lists the newest dead letters with their reasons.

Exit 1 when nothing is recorded about it; 2 when a prefix names several fingerprints.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.console import dump_json, visible
from pipeline.errors import UsageError


def register(sub: Any) -> None:
    parser = sub.add_parser("explain", help="every decision heal made about a fingerprint")
    parser.add_argument("fingerprint", metavar="FP", nargs="?", default=None,
                        help="fp-v8:... (fine or coarse), a unique prefix, or an error id")
    parser.add_argument("--dead", action="store_true",
                        help="list the newest dead letters (events the pipeline could not "
                        "process) with their reasons")
    parser.add_argument("--limit", type=int, default=20,
                        help="dead letters listed with --dead (default 20)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _client(settings: Settings, problems: list[str]) -> redis.Redis | None:
    """A pinged Redis client, or None (and a problem noted) when Redis is unreachable:
    PostgreSQL still tells most of the story."""
    from pipeline.operator.explain import guarded
    from storage.engines import connect_redis

    def pinged(settings: Settings) -> redis.Redis | None:
        client = connect_redis(settings)
        client.ping()
        return client

    return guarded(pinged, None, problems)(settings)


def _readers(settings: Settings, problems: list[str]) -> Any:
    from pipeline.operator.explain import stream_readers

    return stream_readers(_client(settings, problems), settings, problems)


def _dead(args: argparse.Namespace, settings: Settings) -> int:
    """``heal explain --dead``: the newest dead letters, newest first."""
    from pipeline.operator.deadletters import ADVICE, read_dead
    from pipeline.operator.render_explain import render_dead
    from pipeline.runtime.connection import redis_failure
    from storage.engines import connect_redis

    if args.fingerprint is not None:
        raise UsageError("heal explain --dead lists every dead letter: give no FP "
                         "(heal explain ERROR_ID explains one)")
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {args.limit})")
    client = connect_redis(settings)
    try:
        letters = read_dead(client, settings, limit=args.limit)
    except redis.RedisError as exc:  # (read_dead translates; the ping in connect may not)
        raise redis_failure(exc, "reading the dead letters", settings.prefix) from exc
    if args.json:
        dump_json({"dead_letters": letters, "advice": ADVICE})
    else:
        print("\n".join(visible(line) for line in render_dead(letters).split("\n")))
    return 0


def run(args: argparse.Namespace) -> int:
    from pipeline.operator.explain import NotFound, explain, lifecycle_in_force
    from pipeline.operator.render_explain import render
    from storage.engines import open_database
    from storage.reports import ReportStore

    settings = Settings.from_env()
    if args.dead:
        return _dead(args, settings)
    if args.fingerprint is None:
        raise UsageError("heal explain: give a fingerprint (fp-v8:...), a unique prefix of one "
                         "or an error id; or --dead to list dead letters")
    from pipeline.cli.fpargs import read

    # fp-... must be a fingerprint (or a prefix of one): a typo exits 2, not "no record"
    args.fingerprint = read(args.fingerprint, "heal explain", or_id=True) or args.fingerprint
    problems: list[str] = []
    db = open_database(settings)
    try:
        story = explain(ReportStore(db), args.fingerprint,
                        streams=_readers(settings, problems), problems=problems,
                        lifecycle=lifecycle_in_force(settings))
    except NotFound:
        # (an error id may be in a stream that could not be read: say so first)
        _warn(problems)
        raise
    finally:
        db.close()
    story["problems"] = problems
    if args.json:
        dump_json(story)
    else:
        # (the story quotes the error's text: its control characters are shown, not sent)
        print("\n".join(visible(line) for line in render(story).split("\n")))
    _warn(problems)
    return 0


def _warn(problems: list[str]) -> None:
    """Each problem on standard error, its control and bidirectional characters shown (they
    quote what they read: an audit_log row's subject changed by hand, an engine's words)."""
    for problem in problems:
        print(f"heal: warning: {visible(problem)}", file=sys.stderr)
