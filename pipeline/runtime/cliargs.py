"""Command-line options shared by ``heal worker`` and ``heal up``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from pipeline.runtime.options import Retention, WorkerOptions

#: argparse dest -> WorkerOptions field
_FIELDS = {
    "batch": "batch_size",
    "block_ms": "block_ms",
    "max_deliveries": "max_deliveries",
    "claim_idle_ms": "claim_idle_ms",
    "dedupe_ttl": "dedupe_ttl_s",
    "backoff_base": "backoff_base_s",
    "backoff_cap": "backoff_cap_s",
    "read_ahead": "read_ahead",
}


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    d = WorkerOptions()
    parser.add_argument("--batch", type=int, metavar="N",
                        help=f"entries per XREADGROUP (default {d.batch_size})")
    parser.add_argument("--block-ms", type=int, metavar="MS",
                        help=f"how long one read blocks (default {d.block_ms})")
    parser.add_argument("--max-deliveries", type=int, metavar="N",
                        help=f"deliveries before dead-lettering (default {d.max_deliveries})")
    parser.add_argument("--claim-idle-ms", type=int, metavar="MS",
                        help="take over entries other consumers left pending this long "
                        f"(default {d.claim_idle_ms}; longer than the slowest handler)")
    parser.add_argument("--dedupe-ttl", type=int, metavar="SECONDS",
                        help=f"keep event-id dedupe markers (default {d.dedupe_ttl_s}; 0 = off)")
    parser.add_argument("--backoff-base", type=float, metavar="SECONDS",
                        help=f"first retry delay (default {d.backoff_base_s})")
    parser.add_argument("--backoff-cap", type=float, metavar="SECONDS",
                        help=f"longest retry delay (default {d.backoff_cap_s})")
    parser.add_argument("--no-read-ahead", dest="read_ahead", action="store_false",
                        default=None,
                        help="one Redis round trip at a time: do not read the next batch and "
                             "commit the last one while handling a batch (default: overlap "
                             "them when a backlog is waiting)")
    parser.add_argument("--retention", metavar="SPEC", default=None,
                        help="trim outputs on write: none | maxlen:N | age:7d (default age:7d)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="the least severe log lines shown (default INFO)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the embedded engines' own log lines (default: they go to "
                             "$HEAL_HOME/logs/engines.log)")


def options_from_args(args: argparse.Namespace) -> tuple[WorkerOptions, set[str]]:
    """WorkerOptions from the parsed flags, and the names of the fields set explicitly.

    Raises:
        UsageError: a value out of range or an unreadable --retention.
    """
    changes: dict[str, Any] = {}
    for dest, name in _FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "retention", None):
        changes["retention"] = Retention.parse(args.retention)
    return WorkerOptions(**changes).validate(), set(changes)


def configure_logging(level: str = "INFO", verbose: bool = False) -> None:
    """Our log lines on stderr; the embedded engines' in ``$HEAL_HOME/logs/`` unless
    ``verbose``."""
    from pipeline.config import Settings
    from pipeline.enginelogs import route_engine_logs

    route_engine_logs(Settings.from_env().home, verbose)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(processName)s %(threadName)s %(levelname)s %(message)s"
        ))
        root.addHandler(handler)
    root.setLevel(level)
