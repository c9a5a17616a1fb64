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

import sys

from pipeline import stopsignals

# `heal run`: a runner's SIGTERM/SIGHUP from here on is noted and handled as a stop (the
# decision JSON written, the exit status it says), not a death with 143 and nothing written;
# before the imports below, which take most of heal's start. Only for the `heal` program's
# own `run` command: importing this package elsewhere changes no signal handling.
if sys.argv[1:2] == ["run"] and sys.argv[0].rsplit("/", 1)[-1] == "heal":
    import atexit

    stopsignals.defer()
    atexit.register(stopsignals.ignore)  # the first registered: it runs last

import argparse  # noqa: E402 - after the signals are deferred (see above)
import errno
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from pipeline import __version__
from pipeline.cliargs import CommandParser, once_everywhere
from pipeline.config import Settings
from pipeline.errors import HealError
from pipeline.homedir import require_home, secure_home


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given ``argv`` whose command has a module of the same name, only that
    module is imported (a one-shot command does not pay for every other command's imports);
    otherwise (``--help``, no command, an unknown one) every command is registered."""
    parser = CommandParser(
        prog="heal",
        description="Self-healing pipelines: detect, group, explain and fix recurring failures.",
    )
    parser.add_argument("--version", action="version", version=f"heal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    command = _command(argv)
    if command in names and _register(sub, command) and command in sub.choices:
        once_everywhere(parser)
        return parser
    if command in names:  # its module names another command: start over with all of them
        return build_parser(None)
    for name in names:
        _register(sub, name)
    once_everywhere(parser)  # an option taking one value, given twice, is bad usage
    return parser


def _command(argv: Sequence[str] | None) -> str | None:
    """The command word of ``argv``: its first argument, when that is not an option."""
    if argv is None or not argv or argv[0].startswith("-"):
        return None
    return argv[0]


def _register(sub: argparse._SubParsersAction[CommandParser], name: str) -> bool:
    module = importlib.import_module(f"{__name__}.{name}")
    register = getattr(module, "register", None)
    if register is None:
        return False
    register(sub)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ensure_standard_fds()
    one_shot_log_lines()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = Settings.from_env()  # malformed variables: exit 2 before any work
        if settings.home_source == "HEAL_HOME":  # the defaults are checked where used
            require_home(settings.home, settings.describe_home())
        secure_home(settings.home)  # an existing home is tightened at every start
        return int(func(args) or 0)
    except HealError as exc:
        print(f"heal: error: {exc}", file=sys.stderr)
        _on_error(args, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("heal: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:  # the last line of defence: never a bare traceback
        if os.environ.get("HEAL_DEBUG"):
            traceback.print_exc()
        disk = _disk_problem(exc)
        if disk:  # a full or read-only disk is the machine's state, never a bug to report
            print(f"heal: error: {disk}", file=sys.stderr)
            return 1
        print(
            f"heal: internal error: {type(exc).__name__}: {exc}\n"
            "heal: rerun with HEAL_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return 1


def _disk_problem(exc: BaseException) -> str:
    """The message for a write that found its file system full or read-only and that no layer
    translated (those under HEAL_HOME are, see pipeline.homedir.home_writes); "" otherwise."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT,
                                                        errno.EROFS):
        return ""
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"{exc.strerror}{where}: free space on that file system (HEAL_HOME="
            f"{os.environ.get('HEAL_HOME') or './.heal'}, the repository or the temporary "
            "folder) or make it writable, then retry")


class _OncePerProcess(logging.Filter):
    """Lets each distinct message through once (a warning two layers log says one thing)."""

    def __init__(self, limit: int = 256) -> None:
        super().__init__()
        self.limit = limit
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        if len(self.seen) < self.limit:
            self.seen.add(message)
        return True


def one_shot_log_lines() -> None:
    """The warnings of a command that sets up no logging of its own (``heal run``,
    ``heal diagnose``...) read as heal's other lines, ``heal: <message>``, each once.

    They go through Python's last-resort handler (warnings and worse, on stderr, only while
    no handler is configured): a worker or ``heal serve`` that configures logging keeps its
    own format."""
    last = logging.lastResort
    if last is None or getattr(last, "_heal_one_shot", False):
        return
    last.setFormatter(logging.Formatter("heal: %(message)s"))
    last.addFilter(_OncePerProcess())
    setattr(last, "_heal_one_shot", True)  # noqa: B010 - a marker on a stdlib object


def _on_error(args: argparse.Namespace, exc: HealError) -> None:
    """The command's own ``on_error(args, exc)``, when it set one (``heal run`` writes the
    refusal as its decision JSON); never raises."""
    hook = getattr(args, "on_error", None)
    if hook is None:
        return
    try:
        hook(args, exc)
    except Exception:  # noqa: BLE001 - the error message is already out; nothing to add
        if os.environ.get("HEAL_DEBUG"):
            traceback.print_exc()


def ensure_standard_fds() -> None:
    """Open ``/dev/null`` onto any of fds 0, 1 and 2 that is closed, as daemons do.

    Started with one closed (``heal run -- CMD <&-``, ``>&-``, ``2>&-``), the next file or
    socket heal or a server it starts (redis-server, postgres) opens would take that number
    and be read as stdin or written over as stdout; and Python leaves ``sys.stdout`` None.
    With /dev/null there, what would have gone to a closed stream is simply dropped.
    """
    reopened: set[int] = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:  # the lowest free number is this one unless a lower one was closed too
            os.dup2(null, fd)
            os.close(null)
        reopened.add(fd)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:  # Python found the fd closed at its start
            # the fd reopened just now; else something took its number meanwhile: not ours
            target: int | str = fd if fd in reopened else os.devnull
            errors = "backslashreplace" if fd == 2 else None
            setattr(sys, name, open(target, mode, encoding="utf-8", errors=errors,  # noqa: SIM115
                                    closefd=target != fd))


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
