"""``heal run [--mode M] [--timeout S] [--step NAME] [--workflow ID] -- CMD ...``
(see producers/run.py)."""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.model import Mode


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a command; on failure publish it and wait for the pipeline's decision",
        description=(
            "Run CMD with its output passed through. On failure publish an error event, wait "
            "for the pipeline's decision (running the stages in this process when no workers "
            "run), and when a verified fix was applied run CMD again. Exits with CMD's status."
        ),
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode],
                        help="rollout mode for this error (tags.mode); default: heal.toml")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds to wait for the decision (default 120)")
    parser.add_argument("--step", default="", metavar="NAME",
                        help="step name for the event and its success record (default: CMD)")
    parser.add_argument("--workflow", default="", metavar="ID",
                        help="the workflow whose execution state gates automatic fixes "
                             "(default: $HEAL_WORKFLOW, else the repository)")
    parser.add_argument("--no-wait", action="store_true",
                        help="publish the failure and exit at once")
    parser.add_argument("--json", action="store_true",
                        help="write the decision as one JSON object to stderr (stdout stays "
                             "the command's own)")
    parser.add_argument("--json-file", default="", metavar="PATH",
                        help="write the decision JSON to PATH")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from producers.run import heal_run

    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command given: use `heal run [OPTIONS] -- CMD [ARGS...]`")
    if args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be 0 or more seconds")
    return heal_run(
        argv, Settings.from_env(), mode=args.mode or "", timeout_s=args.timeout,
        step=args.step, wait=not args.no_wait, workflow=args.workflow,
        json_to=args.json_file or ("-" if args.json else ""),
    )
