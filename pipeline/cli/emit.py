"""``heal emit``: publish events given as JSON lines on standard input."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.config import Settings
from pipeline.errors import HealError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emit",
        help="publish events given as JSON lines on standard input",
        description=(
            "Read one contract JSON event per line from standard input and publish each valid "
            "one. A bad line is reported with its number and reason and does not stop the "
            "others; the exit status is 1 when any line was bad."
        ),
    )
    parser.add_argument("--json", action="store_true",
                        help="print the counts as one JSON object on stdout")
    parser.set_defaults(func=_emit)


def _emit(args: argparse.Namespace) -> int:
    from producers.emit import EmitReport, emit_lines, line_ranges
    from producers.publisher import Publisher, connect

    settings = Settings.from_env()
    client = connect(settings)
    publisher = Publisher(client, settings)
    report = EmitReport()
    try:
        try:
            emit_lines(sys.stdin.buffer, publisher, report=report)
        except OSError as exc:  # (publishing raises StreamUnavailable, not this)
            raise HealError(f"standard input cannot be read: {exc.strerror or exc}; the "
                            "events after the last one read were not sent") from exc
    except BaseException:  # what was read is published; say so before the error is shown
        for number, reason in report.bad:
            print(f"heal emit: line {number}: {reason}", file=sys.stderr)
        # exactly the lines to send again (Redis may have taken some events of the batch it
        # refused: sending the whole batch again would publish those twice)
        unsent = (f", {report.unpublished} event(s) not published: line(s) "
                  f"{line_ranges(report.unpublished_lines)} (send them again)"
                  if report.unpublished else "")
        print(f"heal emit: stopped; published {report.published} event(s) read before the "
              f"error{unsent}; the input after line {report.last_line} was not read",
              file=sys.stderr)
        raise
    for number, reason in report.bad:
        print(f"heal emit: line {number}: {reason}", file=sys.stderr)
    if args.json:
        from pipeline.console import dump_json

        dump_json({"published": report.published,
                   "bad": [{"line": n, "reason": r} for n, r in report.bad]})
    print(
        f"heal emit: published {report.published} event(s)"
        + (f", {len(report.bad)} bad line(s) skipped" if report.bad else ""),
        file=sys.stderr,
    )
    from pipeline.cli.unserved import say_unserved

    say_unserved("emit", client, settings, report.published)
    return 1 if report.bad else 0
