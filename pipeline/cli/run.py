"""``heal run [--mode M] [--timeout S] [--step NAME] [--workflow ID] [--no-wait]
[--json | --json-file PATH] -- CMD ...`` (see producers/run.py).

Bad usage or configuration (no command, a command that cannot be found, ``--timeout`` that is
not a finite number of seconds, ``--json`` with ``--json-file``, a ``--json-file`` in a folder
that does not exist or cannot be written, a malformed engine URL or ``HEAL_PARTITIONS``) exits
2 before the command runs; with ``--json``/``--json-file`` the refusal is written as the
decision JSON too (``"decision": "refused"``) wherever it can be.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
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
    to = parser.add_mutually_exclusive_group()
    to.add_argument("--json", action="store_true",
                    help="write the decision as one JSON object to stderr (stdout stays the "
                         "command's own)")
    to.add_argument("--json-file", default="", metavar="PATH",
                    help="write the decision JSON to PATH (its folder must exist)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command to run, after --, with its arguments (no shell)")
    parser.set_defaults(func=_run, on_error=_refused)
    parser.on_usage_error = _refused_arguments


def _run(args: argparse.Namespace) -> int:
    from producers.run import heal_run

    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command given: use `heal run [OPTIONS] -- CMD [ARGS...]`")
    if not math.isfinite(args.timeout) or args.timeout < 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be a number of seconds, 0 or more "
                         "(e.g. --timeout 120)")
    if args.json_file:
        _check_json_file(args.json_file)
    return heal_run(
        argv, Settings.from_env(), mode=args.mode or "", timeout_s=args.timeout,
        step=args.step, wait=not args.no_wait, workflow=args.workflow,
        json_to=args.json_file or ("-" if args.json else ""),
    )


def _check_json_file(path: str) -> None:
    """``--json-file PATH`` must be a file heal can write once the command ran: refused before
    it runs, rather than found out afterwards. Raises: UsageError."""
    target = Path(path)
    folder = target.parent
    problem = ""
    if target.is_dir():
        problem = "is a directory"
    elif not folder.is_dir():
        problem = f"its folder {folder} does not exist (create it first)"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"its folder {folder} is not writable"
    elif target.exists() and not os.access(target, os.W_OK):
        problem = "is not writable"
    if problem:
        raise UsageError(f"--json-file {path}: {problem}; name a file heal may write")


def _refused_arguments(given: list[str], message: str) -> None:
    """argparse refused ``heal run``'s arguments (``--mode yolo``, ``--timeout`` given twice,
    an unknown option): the refusal is the decision JSON too, when ``--json`` or
    ``--json-file PATH`` was among them (not both: that pair is what was refused). The
    options are read as argparse reads them, up to ``--``, including unique abbreviations
    (``--json-f PATH``). Never raises."""
    cmd = given[given.index("--") + 1:] if "--" in given else []
    options = given[:given.index("--")] if "--" in given else given
    json = False
    json_file = ""
    for at, word in enumerate(options):
        name, eq, value = word.partition("=")
        if name == "--json" and not eq:
            json = True
        elif len(name) > len("--json") and "--json-file".startswith(name):
            if eq:
                json_file = value
            elif at + 1 < len(options):
                json_file = options[at + 1]
    if json and json_file:
        return
    args = argparse.Namespace(cmd=cmd, json=json, json_file=json_file)
    _refused(args, UsageError(message))


def _refused(args: argparse.Namespace, exc: Exception) -> None:
    """A refusal (bad usage or configuration, exit 2) is a decision too: written as the
    decision JSON when one was asked for and can be written. Never raises."""
    from pipeline.console import dump_json
    from pipeline.errors import HealError
    from producers.run import decision_json

    argv = list(getattr(args, "cmd", None) or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    status = exc.exit_code if isinstance(exc, HealError) else 1
    # the same keys as every decision JSON, the command redacted as in every event (a
    # refusal's file is uploaded as a CI artifact as any other)
    data = decision_json(argv, status, "refused", str(exc), headline=str(exc))
    try:
        if getattr(args, "json", False):
            import sys

            dump_json(data, sys.stderr)
        elif getattr(args, "json_file", ""):
            with open(args.json_file, "w", encoding="utf-8") as fh:
                dump_json(data, fh)
    except (OSError, ValueError):
        pass  # the file was the trouble (or the stream is gone): the message says it all
