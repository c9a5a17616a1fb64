"""``heal watch PATH ...``: follow log files (or transcripts) and publish their errors."""

from __future__ import annotations

import argparse
import math
import os
import signal
import stat
import sys
import threading
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.safefile import FileRefused, kind_of, open_regular

#: the most --interval and --idle-flush take: an hour
MAX_SECONDS = 3600.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="follow log files and publish their error records",
        description=(
            "Follow log files (rotation and truncation safe; resumes from the offset saved "
            "under $HEAL_HOME/watch after a restart), assemble multi-line records (tracebacks, "
            "pytest failures) and publish the error records. With --transcript, the files are "
            "agent-session JSONL transcripts and failed tool calls are published."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a log file to follow (new lines are published as errors)")
    parser.add_argument("--transcript", action="store_true",
                        help="the files are JSONL agent transcripts")
    parser.add_argument("--from-start", action="store_true",
                        help="read the files from their start, even one whose offset was "
                             "saved by an earlier watch (default: a new file from its end, "
                             "a known one from its saved offset)")
    parser.add_argument("--once", action="store_true",
                        help="publish what the files hold now, save offsets, and exit")
    parser.add_argument("--interval", type=float, default=0.5, metavar="S",
                        help=f"seconds between polls, more than 0 and at most "
                             f"{MAX_SECONDS:g} (default 0.5)")
    parser.add_argument("--idle-flush", type=float, default=2.0, metavar="S",
                        help=f"a record with no new line for S seconds is complete, 0 to "
                             f"{MAX_SECONDS:g} (default 2)")
    parser.add_argument("--no-learn", action="store_true",
                        help="with --transcript: publish failures only, learn no precedents")
    parser.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    from producers.publisher import Publisher, connect
    from producers.watch import Watcher

    check_seconds(args.interval, args.idle_flush)
    for path in args.paths:
        check_path(path, args.once)
    from pipeline.cli.unserved import hint_once

    settings = Settings.from_env()
    client = connect(settings)
    publisher = Publisher(client, settings)
    # --once says it with its total, at the end; a long watch when it first publishes
    publish = (publisher.publish_many if args.once
               else hint_once("watch", client, settings, publisher.publish_many))
    teacher = None
    if args.transcript and not args.no_learn:
        from producers.transcript_learning import WatchTeacher

        teacher = WatchTeacher(settings, lambda m: print(f"heal watch: {m}", file=sys.stderr))
    watcher = Watcher(args.paths, settings.home, publish,
                      from_start=args.from_start, transcript=args.transcript,
                      idle_flush_s=args.idle_flush, learn=teacher,
                      report=lambda m: print(f"heal watch: {m}", file=sys.stderr))
    try:
        return _follow(args, watcher, lambda count: _say_unserved(client, settings, count))
    finally:
        if teacher is not None:
            teacher.close()


def check_path(path: str, once: bool) -> None:
    """Raises: UsageError for a path that is not a regular file heal can read, or (with
    ``--once``, which waits for nothing) that does not exist; without ``--once`` a missing
    path is waited for."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if once:
            raise UsageError(f"{path} does not exist; give log files that exist (without "
                             "--once, heal watch waits for a file to appear)") from None
        print(f"heal watch: {path} does not exist yet; waiting for it", file=sys.stderr)
        return
    except OSError as exc:  # a folder on the way that heal may not enter
        raise UsageError(f"{path} cannot be read: {exc.strerror or exc}; give the user heal "
                         "runs as access to it") from exc
    if not stat.S_ISREG(mode):  # (a FIFO would block the watch on its first read)
        raise UsageError(f"{path} is {kind_of(mode)}, not a regular file; give the log "
                         "files to follow")
    try:
        open_regular(path).close()
    except FileNotFoundError:
        return  # removed since: a rotation; the follower waits for the next file
    except FileRefused as exc:
        raise UsageError(f"{path} {exc}; give the user heal runs as read access to it "
                         "(its permissions), or run heal as a user who can read it") from exc


def check_seconds(interval: float, idle_flush: float) -> None:
    """Raises: UsageError for a --interval or --idle-flush that is not a finite number of
    seconds in its range (``inf`` once crashed the watch, ``nan`` never flushed a record)."""
    if not (math.isfinite(interval) and 0 < interval <= MAX_SECONDS):
        raise UsageError(f"--interval {interval:g}: must be a number of seconds more than 0 "
                         f"and at most {MAX_SECONDS:g} (e.g. --interval 0.5)")
    if not (math.isfinite(idle_flush) and 0 <= idle_flush <= MAX_SECONDS):
        raise UsageError(f"--idle-flush {idle_flush:g}: must be a number of seconds from 0 to "
                         f"{MAX_SECONDS:g} (e.g. --idle-flush 2)")


def _say_unserved(client: Any, settings: Settings, count: int) -> None:
    from pipeline.cli.unserved import say_unserved

    say_unserved("watch", client, settings, count)


def _follow(args: argparse.Namespace, watcher: Any, unserved: Any) -> int:
    if args.once:
        count = watcher.drain()
        print(f"heal watch: published {count} event(s)", file=sys.stderr)
        unserved(count)
        unread = [f for f in watcher.followers if f.refused]
        for follower in unread:  # (it became unreadable after the check at start)
            print(f"heal watch: {follower.path} was not read: it {follower.refused}",
                  file=sys.stderr)
        return 1 if unread else 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"heal watch: following {len(args.paths)} file(s); Ctrl-C to stop", file=sys.stderr)
    count = watcher.run(stop, args.interval)
    print(f"heal watch: stopped; published {count} event(s)", file=sys.stderr)
    return 0
