"""``heal backfill [PATH ...] | --transcript FILE ... | --replay [--since T] | --discover [REPO]``,
and ``--shadow [--mode M]`` on any of them (``pipeline.shadow``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import EngineError, UsageError

if TYPE_CHECKING:
    from producers.backfill import BackfillStats


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
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="a log file or folder of old logs to read (gzip too)")
    parser.add_argument("--transcript", action="append", default=[], metavar="FILE",
                        help="a JSONL agent transcript (repeatable)")
    parser.add_argument("--replay", action="store_true",
                        help="replay <prefix>:errors history instead of reading files")
    parser.add_argument("--since", metavar="T",
                        help="with --replay: ISO date or time (2026-11-22T10:00:00Z), age "
                             "(30m, 2h, 7d) or stream id (1700000000000-0)")
    parser.add_argument("--dry-run", action="store_true", help="publish nothing")
    parser.add_argument("--json", action="store_true",
                        help="with --dry-run: print each event (with --discover: the files "
                             "found) as JSON; with --shadow: the report; otherwise a JSON "
                             "summary")
    parser.add_argument("--force", action="store_true",
                        help="ignore the saved per-file marks and read files from the start")
    parser.add_argument("--discover", nargs="?", const=".", metavar="REPO",
                        help="find the log files of a repository (default: .) with the globs "
                             "of heal.toml [backfill] paths/exclude (or built-in defaults); "
                             "lists them, and backfills them unless --dry-run")
    parser.add_argument("--glob", action="append", default=[], metavar="GLOB",
                        help="with --discover: another glob relative to REPO (repeatable)")
    parser.add_argument("--shadow", action="store_true",
                        help="run the errors through fingerprint/lookup/validate in isolation "
                             "(own prefix, database and repository copies), apply nothing, and "
                             "report what --mode would have done")
    parser.add_argument("--mode", choices=["suggest", "auto-safe", "auto"],
                        help="with --shadow: the mode to evaluate (default auto-safe)")
    parser.set_defaults(func=_backfill)


def _validate(args: argparse.Namespace) -> None:
    if args.replay and (args.paths or args.transcript or args.discover):
        raise UsageError("--replay reads the error stream; give no PATH, --transcript or "
                         "--discover with it")
    if args.since is not None and not args.replay:
        raise UsageError("--since only applies to --replay")
    if args.glob and args.discover is None:
        raise UsageError("--glob only applies to --discover")
    if args.mode and not args.shadow:
        raise UsageError("--mode only applies to --shadow (heal.toml sets the real mode)")
    if args.shadow and args.dry_run:
        raise UsageError("--shadow publishes nothing already; leave out --dry-run")
    if not (args.replay or args.paths or args.transcript or args.discover is not None):
        raise UsageError("give log files (PATH ...), --transcript FILE, --discover [REPO], "
                         "or --replay")


def _backfill(args: argparse.Namespace) -> int:
    from producers.backfill import Backfiller, check_paths, replay_stream, since_to_id
    from producers.publisher import Publisher, connect

    _validate(args)
    logs = check_paths(args.paths)
    transcripts = check_paths(args.transcript)
    if args.since is not None:
        since_to_id(args.since)  # a bad (or empty) --since is a usage error before any work
    settings = Settings.from_env()
    if args.discover is not None or args.shadow:
        return _discover_or_shadow(args, settings, logs, transcripts)
    client = _client(settings, connect, needed=args.replay or not args.dry_run)
    publish = None if args.dry_run else Publisher(client, settings).publish_many
    emit = _printer() if args.dry_run and args.json else None
    backfiller = Backfiller(client, settings, publish, force=args.force, on_damage=_damaged)
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
    status = _summarize(args, backfiller.stats)
    if publish is not None:
        from pipeline.cli.unserved import say_unserved

        say_unserved("backfill", client, settings, backfiller.stats.events)
    return status


def _summarize(args: argparse.Namespace, stats: BackfillStats) -> int:
    """The end of a backfill on stderr (``--json`` without ``--dry-run``: also on stdout):
    what was published, what an earlier backfill read, each transcript's skipped lines and
    the files that could be read only in part (named as they were met: then 1, else 0)."""
    verb = "would publish" if args.dry_run else "published"
    # (bytes an earlier backfill read, whatever they held: a transcript's unreadable lines
    # were once called "published before")
    extra = (f", skipped {stats.skipped_bytes} bytes read by an earlier backfill (--force "
             "reads them again)" if stats.skipped_bytes else "")
    bad = f", {stats.bad_entries} undecodable entries skipped" if stats.bad_entries else ""
    if stats.earlier_copies:
        n = stats.earlier_copies
        bad += (f", {n} cop{'y' if n == 1 else 'ies'} of an earlier replay left out (its "
                "error is replayed once)")
    for name, found in stats.transcripts.items():
        for problem in found.problems():
            print(f"heal backfill: {name}: {problem}" if not problem.startswith(" ")
                  else problem, file=sys.stderr)
    damaged = (f"; {len(stats.damaged)} file(s) could be read only in part (named above)"
               if stats.damaged else "")
    unreadable = getattr(args, "unreadable", [])  # (discovered files heal may not read)
    folders = sum(1 for u in unreadable if getattr(u, "folder", False))
    if len(unreadable) > folders:
        damaged += f"; {len(unreadable) - folders} file(s) could not be read (named above)"
    if folders:
        damaged += f"; {folders} folder(s) could not be read (named above)"
    if args.json and not args.dry_run:
        summary = {"published": stats.events, "files": stats.files,
                   "skipped_bytes": stats.skipped_bytes, "bad_entries": stats.bad_entries,
                   "earlier_copies": stats.earlier_copies,
                   "transcripts": {p: t.to_dict() for p, t in stats.transcripts.items()},
                   "damaged": [{"path": d.path, "offset": d.offset, "reason": d.reason}
                               for d in stats.damaged],
                   "unreadable": [u.to_dict() for u in unreadable]}
        dump_json(summary)
    if stats.legacy_marks:
        print(f"heal backfill: {stats.legacy_marks} file(s) had a mark saved by an earlier heal "
              "version, which cannot tell files that start alike apart; read from their start "
              "(the runtime drops the events published before)", file=sys.stderr)
    print(f"heal backfill: {verb} {stats.events} event(s) from "
          f"{'the error stream' if args.replay else f'{stats.files} file(s)'}{extra}{bad}"
          f"{damaged}", file=sys.stderr)
    return 2 if unreadable else 1 if stats.damaged else 0


def _damaged(exc: Any) -> None:
    print(f"heal backfill: {exc}; going on with the other files", file=sys.stderr)


def _discover_or_shadow(args: argparse.Namespace, settings: Settings, logs: list[Any],
                        transcripts: list[Any]) -> int:
    if args.discover is not None:
        found = _discover(args, settings)
        if args.dry_run or not (found or logs or transcripts):
            return 2 if getattr(args, "unreadable", []) else 0
        logs = logs + [f.path for f in found]
    if args.shadow:
        status = _shadow(args, settings, logs, transcripts)
        return 2 if getattr(args, "unreadable", []) else status
    args.paths, args.discover, args.glob = [str(p) for p in logs], None, []
    return _backfill(args)  # the discovered files, backfilled like files given by hand


def _discover(args: argparse.Namespace, settings: Settings) -> list[Any]:
    """Find (and list) the logs of ``--discover REPO``; a JSON document with --dry-run --json."""
    from pathlib import Path

    from producers.discovery import Unreadable, configured, discover, human_size

    root = Path(args.discover).resolve()
    globs, exclude = configured(root, args.glob)
    unreadable: list[Unreadable] = []
    found = discover(root, globs, exclude, home=settings.home, unreadable=unreadable)
    # (named, counted in the summary and exit 2, as a PATH heal cannot read is; the readable
    # files are still backfilled)
    args.unreadable = unreadable
    for item in unreadable:
        print(f"heal backfill: {item.message()}", file=sys.stderr)
    if args.json and args.dry_run:
        dump_json({"repo": str(root), "globs": globs, "exclude": exclude,
                   "files": [f.to_dict() for f in found],
                   "unreadable": [u.to_dict() for u in unreadable]})
        return found
    out = sys.stderr if args.json else sys.stdout
    total = human_size(sum(f.size for f in found))
    print(f"heal backfill: {len(found)} log file(s) under {root} ({total})", file=out)
    for f in found:
        print(f"  {human_size(f.size):>9}  {f.path.relative_to(root)}", file=out)
    return found


def _shadow(args: argparse.Namespace, settings: Settings, logs: list[Any],
            transcripts: list[Any]) -> int:
    """Shadow mode: read the history (files or the stream; nothing is published to the real
    streams and no per-file mark is saved), run it in isolation and print the report."""
    from pathlib import Path

    from pipeline.errors import DamagedFile
    from pipeline.shadow import render, run_shadow
    from producers.backfill import BackfillStats, replay_stream, scan_file
    from storage.engines import connect_redis

    client = connect_redis(settings)
    damaged: list[DamagedFile] = []

    def source(emit: Any) -> None:
        if args.replay:
            replay_stream(client, settings, args.since, emit, BackfillStats())
        for path, transcript in [(p, False) for p in logs] + [(p, True) for p in transcripts]:
            try:
                for event, _ in scan_file(path, transcript=transcript):
                    emit(event)
            except DamagedFile as exc:  # what could be read is in; the other files go on
                damaged.append(exc)
                _damaged(exc)

    mode = args.mode or "auto-safe"
    print(f"heal shadow: mode {mode}; isolated, nothing is applied", file=sys.stderr)
    repo = Path(args.discover).resolve() if args.discover is not None else None
    report = run_shadow(settings, client, source, mode, repo=repo)
    if args.json:
        dump_json(report.to_dict())
    else:
        print(render(report))
    return 1 if damaged else 0


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
