"""``heal worker STAGE [--concurrency N]``: run one stage; start as many as you like.

Each of the N worker processes is one consumer in the stage's group; the group spreads
entries across all consumers on all machines. SIGTERM/SIGINT: finish the event in hand,
commit, exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pipeline.config import STAGES, Settings
from pipeline.errors import HealError
from pipeline.runtime.cliargs import add_worker_options, configure_logging, options_from_args
from pipeline.runtime.loader import build_stage_worker, load_stage
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.runner import (
    check_concurrency,
    run_processes,
    run_threads,
    stop_when_orphaned,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run one stage (consumer group); start as many as you like",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", metavar="STAGE", help=f"one of: {', '.join(STAGES)}")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="worker processes for this stage (default 1; at most 4 per "
                        "core, and that cap is never below 8 nor above 64)")
    add_worker_options(parser)
    parser.set_defaults(func=run)


def run_one(stage: str, options: WorkerOptions, explicit: set[str], index: int) -> int:
    """One worker in this process until a signal.

    Raises:
        StreamUnavailable / ConfigError: Redis unreachable or misconfigured.
    """
    from storage.engines import connect_redis  # lazy: engines start only when needed

    settings = Settings.from_env()
    # a socket timeout longer than one blocking read: a vanished server is noticed
    client = connect_redis(settings, socket_timeout=options.block_ms / 1000 + 10)
    worker = build_stage_worker(
        client, settings, load_stage(stage), options=options, explicit=explicit, index=index
    )
    return run_threads([worker])


def child_main(stage: str, options: WorkerOptions, explicit: set[str], index: int,
               log_level: str, parent_pid: int) -> None:
    """Entry point of one worker process (spawned)."""
    configure_logging(log_level)
    stop_when_orphaned(parent_pid)
    try:
        code = run_one(stage, options, explicit, index)
    except HealError as exc:
        print(f"heal: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    raise SystemExit(code)


def run(args: argparse.Namespace) -> int:
    check_concurrency(args.concurrency)  # first: nothing is started for a refused count
    options, explicit = options_from_args(args)
    load_stage(args.stage)  # fail fast: unknown or not-built stage
    # fail fast on signing keys the stage cannot use (ConfigError, exit 2): it checks
    # attestations or seals with them and would retry and dead-letter every event
    from pipeline.trust.keys import keys_for

    keys_for(Settings.from_env())
    configure_logging(args.log_level, args.verbose)
    if args.concurrency == 1:
        return run_one(args.stage, options, explicit, 0)
    from storage.engines import connect_redis

    # fail fast here (a clear message, exit status) rather than N children restarting
    connect_redis(Settings.from_env()).close()
    parent = os.getpid()
    return run_processes(
        child_main,
        lambda i: (args.stage, options, explicit, i, args.log_level, parent),
        args.concurrency,
    )
