"""``heal backfill [PATH ...] | --transcript FILE ... | --replay [--since T]``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import orjson

from pipeline.config import Settings
from pipeline.errors import EngineError, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="publish the errors of historical logs, or replay the error stream",
        description=(
            "Read historical log files like `heal watch` (same records, same deterministic ids; "
            "a second backfill publishes only what was appended since) and publish their error "
            "records; --transcript reads agent JSONL transcripts; --replay re-publishes the "
            "error stream's history (copies get new ids tagged replay_of)."
        ),
    )
    parser.add_argument("paths", nargs="*", metavar="PATH")
    parser.add_argument("--transcript", action="append", default=[], metavar="FILE",
                        help="a JSONL agent transcript (repeatable)")
    parser.add_argument("--replay", action="store_true",
                        help="replay <prefix>:errors history instead of reading files")
    parser.add_argument("--since", metavar="T",
                        help="with --replay: ISO time, age (30m, 2h, 7d) or stream id")
    parser.add_argument("--dry-run", action="store_true", help="publish nothing")
    parser.add_argument("--json", action="store_true",
                        help="with --dry-run: print each event as one JSON line; "
                             "otherwise a JSON summary")
    parser.add_argument("--force", action="store_true",
                        help="ignore the saved per-file marks and read files from the start")
    parser.set_defaults(func=_backfill)


def _validate(args: argparse.Namespace) -> None:
    if args.replay and (args.paths or args.transcript):
        raise UsageError("--replay reads the error stream; give no PATH or --transcript with it")
    if args.since and not args.replay:
        raise UsageError("--since only applies to --replay")
    if not (args.replay or args.paths or args.transcript):
        raise UsageError("give log files (PATH ...), --transcript FILE, or --replay")


def _backfill(args: argparse.Namespace) -> int:
    from producers.backfill import Backfiller, check_paths, replay_stream, since_to_id
    from producers.publisher import Publisher, connect

    _validate(args)
    logs = check_paths(args.paths)
    transcripts = check_paths(args.transcript)
    if args.since:
        since_to_id(args.since)  # a bad --since is a usage error before any work
    settings = Settings.from_env()
    client = _client(settings, connect, needed=args.replay or not args.dry_run)
    publish = None if args.dry_run else Publisher(client, settings).publish_many
    emit = _printer() if args.dry_run and args.json else None
    backfiller = Backfiller(client, settings, publish, force=args.force)
    if args.replay:
        replayed: list[Any] = []

        def collect(event: Any) -> None:
            if emit:
                emit(event)
            if publish is not None:
                replayed.append(event)
                if len(replayed) >= 500:
                    publish(replayed[:])
                    replayed.clear()

        replay_stream(client, settings, args.since, collect, backfiller.stats)
        if publish is not None and replayed:
            publish(replayed)
    for path in logs:
        backfiller.run_file(path, emit=emit)
    for path in transcripts:
        backfiller.run_file(path, transcript=True, emit=emit)
    stats = backfiller.stats
    verb = "would publish" if args.dry_run else "published"
    extra = (f", {stats.skipped_bytes} bytes already published skipped"
             if stats.skipped_bytes else "")
    bad = f", {stats.bad_entries} undecodable entries skipped" if stats.bad_entries else ""
    if args.json and not args.dry_run:
        summary = {"published": stats.events, "files": stats.files,
                   "skipped_bytes": stats.skipped_bytes, "bad_entries": stats.bad_entries}
        print(orjson.dumps(summary).decode())
    print(f"heal backfill: {verb} {stats.events} event(s) from "
          f"{'the error stream' if args.replay else f'{stats.files} file(s)'}{extra}{bad}",
          file=sys.stderr)
    return 0


def _client(settings: Settings, connect: Any, needed: bool) -> Any:
    """A dry-run of files works without Redis (the per-file marks are then not consulted)."""
    try:
        return connect(settings)
    except EngineError as exc:
        if needed:
            raise
        print(f"heal backfill: {exc}; dry-run without the saved marks", file=sys.stderr)
        return None


def _printer() -> Any:
    def emit(event: Any) -> None:
        try:
            sys.stdout.buffer.write(orjson.dumps(event.to_dict()) + b"\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader (e.g. `| head`) has enough: stop quietly, like other Unix tools
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None

    return emit
