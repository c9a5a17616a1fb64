"""``heal up``: every built stage in one process (one thread per stage).

The all-in-one mode against the configured engines; for scale, run ``heal worker STAGE``
processes instead (or as well: they join the same consumer groups).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pipeline.config import STAGES, Settings
from pipeline.errors import UsageError
from pipeline.runtime.cliargs import add_worker_options, configure_logging, options_from_args
from pipeline.runtime.loader import StageNotBuilt, build_stage_worker, built_stages
from pipeline.runtime.runner import run_threads

log = logging.getLogger("heal.runtime")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run every stage in one process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stages", metavar="LIST",
                        help=f"comma-separated subset of: {','.join(STAGES)} (default: all built)")
    add_worker_options(parser)
    parser.set_defaults(func=run)


def stage_list(spec: str | None) -> list[str] | None:
    """The stages ``--stages`` names, in order; None (every built stage) when it is not given.

    Raises:
        UsageError: the list is empty (``--stages ''`` or only commas: it used to run every
            stage) or names a stage twice (two threads of one stage shared one consumer
            name, so one pending list).
    """
    if spec is None:
        return None
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UsageError(f"--stages names no stage; give a comma-separated list of: "
                         f"{','.join(STAGES)} (or leave --stages out for every built stage)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--stages names {', '.join(twice)} more than once; one thread runs "
                         "each stage (for more workers of a stage: heal worker STAGE "
                         "--concurrency N)")
    return names


def run(args: argparse.Namespace) -> int:
    options, explicit = options_from_args(args)
    names = stage_list(args.stages)
    specs = built_stages(names)
    if not specs:
        raise StageNotBuilt("no stage is built yet (no consumers/<stage>.py module)")
    configure_logging(args.log_level, args.verbose)
    skipped = [name for name in STAGES if name not in {s.name for s in specs}]
    if names is None and skipped:
        log.warning("stages not built yet (skipped): %s", ", ".join(skipped))

    from storage.engines import connect_redis  # lazy: engines start only when needed

    settings = Settings.from_env()
    from pipeline.trust.keys import keys_for

    keys_for(settings)  # fail fast on unusable signing keys (see heal worker), engines unstarted
    client = connect_redis(settings, socket_timeout=options.block_ms / 1000 + 10)
    from producers.discovery import offer_backfill

    offer_backfill(settings, client)  # once, on a terminal only: backfill this repo's logs?
    workers = [
        build_stage_worker(client, settings, spec, options=options, explicit=explicit)
        for spec in specs
    ]
    log.info("heal up: %s", ", ".join(w.stage for w in workers))
    return run_threads(workers)
