"""``heal report [--since 7d] [--format text|md|html|json] [--output FILE]``: each healing
(error, fix, tier, time to fix, verification), each escalation with its reason, the
auto-resolved rate (target 80%), MTTR (target under 5 minutes), the false-positive rate
(reverted / applied) and what was learned (new patterns, graduations, quarantines, top
unmatched groups). The HTML is one self-contained file; ``heal serve`` shows it at /report.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import orjson

from pipeline.config import Settings
from pipeline.console import visible
from pipeline.errors import AccessRefused, UsageError
from pipeline.events import ErrorEvent

FORMATS = ("text", "md", "html", "json")


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="what was healed and learned (text, md, html, json)",
                       description=__doc__)
    p.add_argument("--since", default="7d", help="the window: 30m, 24h, 7d, 2w (default 7d)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), md, html or json")
    p.add_argument("--json", action="store_true",
                   help="same as --format json (as every other reporting command takes it)")
    p.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    p.set_defaults(func=run)


def collect(settings: Settings, db: Any, since_text: str) -> dict[str, Any]:
    """The report's data; outcome details for escalations come from Redis when reachable."""
    import datetime as dt

    from pipeline.operator.issues import parse_age
    from pipeline.operator.report import build_report
    from storage.healing import HealingReports
    from storage.learned import LearnedRepository
    from storage.reports import ReportStore

    since = dt.datetime.now(dt.UTC) - parse_age(since_text)
    read = functools.cache(lambda: stream_facts(settings))

    def headlines(ids: list[str]) -> dict[str, str]:
        events = read()[1]
        return {i: own_headline(events[i]) for i in ids if i in events}

    return build_report(HealingReports(db), ReportStore(db), LearnedRepository(db), since,
                        since_text.strip(), lambda: read()[0], headlines)


def stream_facts(settings: Settings, limit: int = 20_000
                 ) -> tuple[dict[str, str], dict[str, ErrorEvent]]:
    """(error id -> why it escalated, error id -> the error event), from the outcome events
    still in the streams: every partition's (HEAL_PARTITIONS), newest first across them, so an
    error escalated twice shows its newest reason. Empty when Redis cannot be reached (the
    report goes on)."""
    from pipeline.errors import StreamUnavailable
    from pipeline.events import OutcomeEvent
    from pipeline.operator.streams import newest_first_everywhere
    from storage.engines import connect_redis

    try:
        client = connect_redis(settings)
    except StreamUnavailable:
        return {}, {}
    found: dict[str, str] = {}
    events: dict[str, ErrorEvent] = {}
    try:
        for o in newest_first_everywhere(client, settings, "outcomes", OutcomeEvent.decode,
                                         limit):
            events.setdefault(o.error_id, o.error)
            if o.status == "escalated":
                found.setdefault(o.error_id, o.detail)
    except (StreamUnavailable, AccessRefused):  # the details are a bonus: what was read
        return found, events
    finally:
        client.close()
    return found, events


def own_headline(event: ErrorEvent) -> str:
    """The error's own headline, as ``heal run`` and the CI reports give it (its own line,
    ``killed by SIGTERM``), never its group's sample's."""
    from pipeline.ci.report import RunReport, describe

    report = RunReport(event, event.exit_code if event.exit_code is not None else 1)
    describe(report)
    return report.headline


def render(data: dict[str, Any], fmt: str) -> str:
    from pipeline.operator import render_report

    if fmt == "json":
        return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"
    if fmt == "md":
        return render_report.render_markdown(data)
    if fmt == "html":
        return render_report.render_html(data)
    return render_report.render_text(data)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        if args.format not in ("text", "json"):
            raise UsageError(f"heal report: --json and --format {args.format} ask for two "
                             "formats; give one")
        args.format = "json"
    from storage.engines import open_database

    settings = Settings.from_env()
    if args.output and Path(args.output).is_dir():  # (said before the report is built)
        suffix = {"text": "txt"}.get(args.format, args.format)
        raise UsageError(f"--output {args.output} is a folder: give a file to write, such as "
                         f"{Path(args.output) / f'heal-report.{suffix}'}")
    db = open_database(settings)
    try:
        data = collect(settings, db, args.since)
    finally:
        db.close()
    for problem in data["problems"]:
        print(f"heal: warning: {visible(problem)}", file=sys.stderr)
    text = render(data, args.format)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output {args.output}: {exc.strerror or exc}") from exc
        print(f"wrote the report to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
