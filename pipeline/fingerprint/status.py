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
from typing import Any, Protocol

from pipeline.fingerprint.model import Extraction
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


def signal_name(exit_code: int | None, signal: str | None = "") -> str:
    """The signal that ended the command: ``signal`` (``tags.signal``, ``SIGSEGV``) when
    given, else the one a shell's status 128+N stands for (``139`` -> ``SIGSEGV``: a CI log
    or a hook knows only the status); empty for a plain exit."""
    name = (signal or "").strip().upper()
    if name:
        return name if name.startswith("SIG") else f"SIG{name}"
    if exit_code is None or not _SIGNAL_BASE < exit_code < _SIGNAL_BASE + 65:
        return ""
    try:
        return _signal.Signals(exit_code - _SIGNAL_BASE).name
    except ValueError:
        return ""


def ended_parts(ended: str) -> tuple[int | None, str]:
    """The (exit code, signal) an :func:`exit_status` key stands for: ``exit 3`` ->
    ``(3, "")``, ``SIGSEGV`` -> ``(None, "SIGSEGV")``, anything else ``(None, "")`` (a queued
    sample's stored status, for the callers that take the event's two fields)."""
    if ended.startswith("exit ") and ended[5:].lstrip("-").isdigit():
        return int(ended[5:]), ""
    if ended.startswith("SIG") and ended[3:].isalnum():
        return None, ended
    return None, ""


def exit_status(exit_code: int | None, signal: str | None = "") -> str:
    """How a failed command ended, as one key: ``SIGSEGV`` for a death by signal, ``exit 3``
    for a non-zero status, empty when unknown or 0 (the fingerprint is then the text's
    alone, as for every text published without a status)."""
    name = signal_name(exit_code, signal)
    if name:
        return name
    if exit_code is None or exit_code == 0:
        return ""
    return f"exit {exit_code}"


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
    if not status.startswith("SIG"):
        status = reported_signal(text) or status
    if status.startswith("SIG"):
        return Extraction(EXIT_KIND, status, f"killed by {status}", tool=extraction.tool)
    return Extraction(EXIT_KIND, status, extraction.message, tool=extraction.tool)


class _Event(Protocol):
    """What :func:`event_status` reads of an ``ErrorEvent``."""

    @property
    def exit_code(self) -> int | None: ...
    @property
    def tags(self) -> dict[str, Any]: ...


def event_status(event: _Event) -> str:
    """:func:`exit_status` of an error event (its ``exit_code`` and ``tags.signal``)."""
    signal = event.tags.get("signal") if isinstance(event.tags, dict) else None
    return exit_status(event.exit_code, signal if isinstance(signal, str) else "")
