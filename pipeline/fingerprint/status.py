"""How a failed command ended, as the fingerprint keys it when its text says nothing of it.

A program that crashes (``killed by SIGSEGV``), aborts or exits with a status after printing
only ordinary lines (``start``, ``loading config``) has no line that says what failed; keyed
on its last ordinary line, a segfault, an abort and a plain ``exit 3`` after the same output
were one group. The event carries how it ended (``exit_code``, ``tags.signal``: see
``producers/run.py``), and :func:`exit_status` makes one key of it that every caller shares
(``fingerprint_event``): the fingerprint stage, ``heal diagnose --exit-code/--signal``, the
lessons, references, CI reports and hooks.

A text that does hold a line saying what failed (an exception, a compiler error, a program's
own diagnostic, ``Segmentation fault``) is keyed by that line as before: the status is no
part of its key.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.parsers_lines import headline_score

#: the extraction kind of a failure keyed on how it ended
EXIT_KIND = "exit"
#: statuses a shell reports for a death by signal N: 128 + N
_SIGNAL_BASE = 128
#: how a shell (or make, which reports its recipe's death) words a death by signal
_REPORTED = {
    "segmentation fault": "SIGSEGV", "aborted": "SIGABRT", "illegal instruction": "SIGILL",
    "bus error": "SIGBUS", "floating point exception": "SIGFPE", "killed": "SIGKILL",
    "trace/breakpoint trap": "SIGTRAP",
}
#: a line ending in such a report (``Segmentation fault (core dumped)``, ``make: *** [run]
#: Aborted``, ``sh: line 1: 42 Killed  ./app``): literal alternatives, linear
_SIGNAL_REPORT = re.compile(
    r"(?:^|[\s\]])(segmentation fault|aborted|illegal instruction|bus error"
    r"|floating point exception|killed|trace/breakpoint trap)"
    r"(?: \(core dumped\))?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


#: a ``tags.signal`` value taken as a signal: a name (``SIGSEGV``, ``segv``) or a number
#: (``11``), bounded; anything else (a control code, a sentence, 3,000 characters) is ignored
_SIGNAL_TAG = re.compile(r"(?:SIG)?[A-Z0-9]{1,12}")
#: how many characters of each part of a program's name the key holds
PROGRAM_PART_CHARS = 64
#: interpreters whose program is the script (or ``-m`` module) they ran, not themselves
_INTERPRETERS = frozenset((
    "python", "pypy", "node", "nodejs", "deno", "bun", "sh", "bash", "zsh", "dash", "ksh",
    "fish", "ruby", "perl", "php", "java", "lua", "rscript", "tclsh", "osascript",
))
#: a command's wrappers that run the next argument: ``env A=1 ./app``, ``nice -n 5 ./app``
_WRAPPERS = frozenset(("env", "exec", "nice", "nohup", "time", "stdbuf", "taskset", "timeout"))
#: an interpreter's version suffix: ``python3.11`` and ``python3`` are ``python``
_VERSION = re.compile(r"[0-9][0-9.]*$")
#: characters a program's name keeps in the key (never whitespace or control codes)
_UNSAFE = re.compile(r"[^\w./@+:-]")


def signal_name(exit_code: int | None, signal: str | None = "") -> str:
    """The signal that ended the command, the one normaliser every caller shares:
    ``signal`` (``tags.signal``: ``SIGSEGV``, ``segv`` or ``11``) when it is a signal's name
    or a known signal's number (any other value is ignored, never keyed), else the signal a
    status stands for: a shell's 128+N (``139`` -> ``SIGSEGV``: a CI log or a hook knows only
    the status) or Python's ``-N`` (a ``subprocess`` return code: hooks, Dagster); empty for
    a plain exit."""
    name = (signal or "").strip().upper()
    if name and _SIGNAL_TAG.fullmatch(name):
        if name.isdigit():
            return _known(int(name))
        return name if name.startswith("SIG") else f"SIG{name}"
    if exit_code is None:
        return ""
    if exit_code < 0:
        return _known(-exit_code)
    if _SIGNAL_BASE < exit_code < _SIGNAL_BASE + 65:
        return _known(exit_code - _SIGNAL_BASE)
    return ""


def _known(number: int) -> str:
    """The name of signal ``number`` on this system, empty when it names none."""
    try:
        return _signal.Signals(number).name
    except ValueError:
        return ""


def program_of(command: Sequence[str]) -> str:
    """The program a command line ran, as the exit-status key names it: its executable's
    basename (``./build/app --port 8080`` -> ``app``), and for an interpreter the script or
    module it ran (``python3 -u tools/seed.py x`` -> ``python seed.py``, ``python -m pkg``
    -> ``python -m pkg``, ``java -jar app.jar`` -> ``java app.jar``, ``sh -c '...'`` ->
    ``sh -c``); never the arguments, which vary from run to run. Bounded; empty for an empty
    command. Idempotent on its own output split at spaces."""
    args = [a for a in command if isinstance(a, str)]
    while args and (_base(args[0]) in _WRAPPERS
                    or ("=" in args[0] and not args[0].startswith("-"))):
        wrapper = _base(args[0])
        args = args[1:]
        # (a wrapper's own options and values: ``nice -n 5``, ``timeout 30``)
        while args and (args[0].startswith("-") or (
                wrapper in ("timeout", "nice")
                and args[0].replace(".", "").rstrip("smhd").isdigit())):
            args = args[1:]
    if not args:
        return ""
    exe = _base(args[0])
    plain = _VERSION.sub("", exe.lower()) or exe.lower()
    if plain not in _INTERPRETERS:
        return _part(exe)
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-m", "-c", "-e", "-jar"):
            target = next(rest, "")
            if arg == "-m" and target:
                return f"{plain} -m {_part(target)}"
            if arg == "-jar" and target:
                return f"{plain} {_part(_base(target))}"
            return f"{plain} {arg}"  # (inline code varies: the flag alone)
        if arg.startswith("-"):
            continue
        return f"{plain} {_part(_base(arg))}"
    return plain


def _base(arg: str) -> str:
    return arg.rstrip("/").rpartition("/")[2] or arg


def _part(name: str) -> str:
    return _UNSAFE.sub("", name)[:PROGRAM_PART_CHARS]


def ended_parts(ended: str) -> tuple[int | None, str, str]:
    """The (exit code, signal, program) an :func:`exit_status` key stands for: ``exit 3`` ->
    ``(3, "", "")``, ``SIGSEGV app`` -> ``(None, "SIGSEGV", "app")``, ``exit 3 python
    seed.py`` -> ``(3, "", "python seed.py")``, anything else ``(None, "", "")`` (a queued
    sample's stored status, for the callers that take the event's fields; the program is
    ``command=program.split()`` for :func:`fingerprint_text`)."""
    head, program = split_status(ended)
    if head.startswith("exit ") and head[5:].lstrip("-").isdigit():
        return int(head[5:]), "", program
    if head.startswith("SIG") and head[3:].isalnum():
        return None, head, program
    return None, "", ""


def split_status(status: str) -> tuple[str, str]:
    """(how it ended, program) of an :func:`exit_status` key: ``SIGSEGV app`` ->
    ``("SIGSEGV", "app")``, ``exit 3`` -> ``("exit 3", "")``."""
    if status.startswith("exit "):
        code, _, program = status[5:].partition(" ")
        return f"exit {code}", program
    head, _, program = status.partition(" ")
    return head, program


def exit_status(exit_code: int | None, signal: str | None = "",
                command: Sequence[str] = ()) -> str:
    """How a failed command ended, as one key: ``SIGSEGV`` for a death by signal, ``exit 3``
    for a non-zero status, followed by the program when the command is known (``SIGSEGV
    app``, ``exit 3 python seed.py``: every silent crash of every program is not one
    group); empty when unknown or 0 (the fingerprint is then the text's alone, as for every
    text published without a status)."""
    name = signal_name(exit_code, signal)
    if not name:
        if exit_code is None or exit_code == 0:
            return ""
        name = f"exit {exit_code}"
    program = program_of(command)
    return f"{name} {program}" if program else name


def says_what_failed(extraction: Extraction) -> bool:
    """Whether the extraction holds a line that says what failed: any parser's but the plain
    text fallback's, or a fallback line with a failure word, an exception's shape or a
    program's own diagnostic (``headline_score`` 2 or more), or a shell's or C library's
    report of a signal (``Segmentation fault (core dumped)``)."""
    if extraction.kind != "text":
        return True
    line = extraction.message.strip()
    return bool(line) and headline_score(line) >= 2


def reported_signal(text: str) -> str:
    """The signal a shell's or make's line of ``text`` reports the command died of (the
    last such line: ``Segmentation fault (core dumped)`` -> ``SIGSEGV``), else empty."""
    found = ""
    for match in _SIGNAL_REPORT.finditer(text):
        found = _REPORTED[match.group(1).lower()]
    return found


def keyed_on_status(extraction: Extraction, status: str, text: str = "") -> Extraction:
    """``extraction``, or, when it says nothing of what failed and ``status`` is known, the
    extraction that keys the failure on how it ended: a death by signal is its signal
    whatever ordinary lines came before (``killed by SIGSEGV``), and so is a status whose
    ``text`` reports the signal (make's ``Segmentation fault`` of its recipe, exit 2); a
    plain exit is its status and its last ordinary line (``exit 3: start``: programs that
    exit 1 after unrelated output are not one group)."""
    if not status or says_what_failed(extraction):
        return extraction
    status, program = split_status(status)
    if not status.startswith("SIG"):
        status = reported_signal(text) or status
    # (the program, when known, is where it failed: in the fine and the coarse key, and in
    # the label: ``killed by SIGSEGV (app)``)
    where = (Frame(program),) if program else ()
    if status.startswith("SIG"):
        return Extraction(EXIT_KIND, status, f"killed by {status}", where,
                          tool=extraction.tool)
    return Extraction(EXIT_KIND, status, extraction.message, where, tool=extraction.tool)


class _Event(Protocol):
    """What :func:`event_status` reads of an ``ErrorEvent``."""

    @property
    def exit_code(self) -> int | None: ...
    @property
    def tags(self) -> dict[str, Any]: ...


def event_status(event: _Event) -> str:
    """:func:`exit_status` of an error event (its ``exit_code``, ``tags.signal`` and
    ``command``)."""
    signal = event.tags.get("signal") if isinstance(event.tags, dict) else None
    command = getattr(event, "command", ())
    return exit_status(event.exit_code, signal if isinstance(signal, str) else "",
                       command if isinstance(command, (tuple, list)) else ())
