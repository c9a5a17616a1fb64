"""``heal engines start|stop|info``: control the embedded Redis and PostgreSQL.

Embedded engines normally start on first use and stop when the last ``heal`` process using
them exits. ``start`` pins them (they keep running with no heal process attached, e.g. for
``redis-cli`` or a debugger); ``stop`` unpins and stops them (``--force`` even while other heal
processes use them). Engines configured by URL are never started or stopped by heal.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from storage.engines import check_urls, engine_info, start_engines, stop_engines


def register(sub: Any) -> None:
    parser = sub.add_parser("engines", help="start, stop or describe the embedded engines")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    start = verbs.add_parser("start", help="start the embedded engines and keep them running")
    start.set_defaults(func=run_start)
    stop = verbs.add_parser("stop", help="stop the embedded engines")
    stop.add_argument(
        "--force", action="store_true", help="stop even while other heal processes use them"
    )
    stop.set_defaults(func=run_stop)
    info = verbs.add_parser("info", help="which engines are configured and whether they run")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=run_info)


def _settings() -> Settings:
    settings = Settings.from_env()
    check_urls(settings)
    return settings


def run_start(args: argparse.Namespace) -> int:
    settings = _settings()
    urls = start_engines(settings)
    for name, url in urls.items():
        print(f"{name}: running at {url} (pinned; `heal engines stop` stops it)")
    if not urls:
        print("both engines are external (HEAL_REDIS_URL, HEAL_DATABASE_URL): nothing to start")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    result = stop_engines(_settings(), force=args.force)
    for name, what in result.items():
        print(f"{name}: {what}")
    if not result:
        print("both engines are external (HEAL_REDIS_URL, HEAL_DATABASE_URL): nothing to stop")
    return 1 if any(what.startswith("still used") for what in result.values()) else 0


def run_info(args: argparse.Namespace) -> int:
    info = engine_info(_settings(), start=False)
    if args.json:
        dump_json(info)
        return 0
    for name, engine in info.items():
        state = "running" if engine.get("reachable") else "not running"
        if engine["mode"] == "external" and not engine.get("reachable"):
            state = "unreachable"
        if engine.get("refused"):  # it answered and refused the URL (or its user's keys)
            state = "running, refused"
        print(f"{name}: {engine['mode']}, {state}")
        for key in ("url", "version", "vector", "data", "pid", "users", "error"):
            if engine.get(key) not in (None, [], ""):
                print(f"  {key}: {engine[key]}")
    return 0
