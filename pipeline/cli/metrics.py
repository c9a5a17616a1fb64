"""``heal metrics [--window 24h|7d|30d] [--json]``: detection, auto-fix and success rates,
MTTR, cost per day, pattern growth and top errors (definitions in
:mod:`pipeline.operator.metrics`). Budget spend needs Redis; when it is unreachable the rest
is still printed and the command exits 1 saying so."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import HealError


def register(sub: Any) -> None:
    parser = sub.add_parser("metrics", help="detection/auto-fix/success rates, MTTR, cost, "
                            "pattern growth, top errors")
    parser.add_argument("--window", choices=("24h", "7d", "30d"),
                        help="one window (default: all three)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _spend_reader(settings: Settings, problems: list[str]) -> Any:
    from pipeline.guardrails.budget import Budget
    from storage.engines import connect_redis

    try:
        budget = Budget(connect_redis(settings), settings)
        budget.spent()  # reachable now, or say so once instead of failing per day
    except HealError as exc:
        problems.append(f"budget spend not shown: {exc}")
        return None
    return budget.spent


def run(args: argparse.Namespace) -> int:
    from pipeline.operator.metrics import collect, render
    from storage.engines import open_database
    from storage.reports import ReportStore

    settings = Settings.from_env()
    problems: list[str] = []
    spend = _spend_reader(settings, problems)
    db = open_database(settings)
    try:
        report = collect(ReportStore(db), args.window, spend=spend)
    finally:
        db.close()
    report["problems"] = problems
    if args.json:
        dump_json(report)
    else:
        print(render(report))
    for problem in problems:
        print(f"heal: error: {problem}", file=sys.stderr)
    return 1 if problems else 0
