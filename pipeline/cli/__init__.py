"""The ``heal`` command line.

Each command lives in its own module in this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning the exit status). Modules are discovered
automatically, so adding a command never touches this file.

Exit status (the contract): 0 success; 1 the work failed; 2 bad usage or configuration.
Errors never print a bare traceback: :class:`~pipeline.errors.HealError` becomes a one-line
message on stderr; anything else is reported as an internal error with a hint to rerun with
``HEAL_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from pipeline import __version__
from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.homedir import secure_home


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heal",
        description="Self-healing pipelines: detect, group, explain and fix recurring failures.",
    )
    parser.add_argument("--version", action="version", version=f"heal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        secure_home(Settings.from_env().home)  # an existing home is tightened at every start
        return int(func(args) or 0)
    except HealError as exc:
        print(f"heal: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("heal: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:  # the last line of defence: never a bare traceback
        if os.environ.get("HEAL_DEBUG"):
            traceback.print_exc()
        print(
            f"heal: internal error: {type(exc).__name__}: {exc}\n"
            "heal: rerun with HEAL_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 1


def _reader_went_away() -> int:
    """The reader of our output left (``heal fingerprint big.log | head -1``): stop quietly,
    like a tool killed by SIGPIPE, without a second error when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
