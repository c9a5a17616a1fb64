"""Android's own failure reports that are no exception: an ANR (Application Not
Responding) as ActivityManager logs it.

``ANR in com.acme.shop (com.acme.shop/.MainActivity)`` then ``PID: ...``, ``Reason: ...``,
``Load: ...`` and the CPU usage table: the Reason says what the app did not answer (input
dispatching, a broadcast, a service), the rest is the moment's figures. Keyed on the Reason,
never on the CPU table's last line (which heads the text otherwise, and is every ANR's).

Only a report is one: ``ANR in`` opening its line (after the log's columns, which end in
``: `` or ``| ``) with a ``Reason:`` (or at least a ``PID:``) line right under it. An
exception whose message names an ANR (``IllegalStateException: watchdog saw ANR in ...``)
is that exception, and a crash's trace in the same dump wins (the JVM parser runs first).
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction

#: ``ANR in <process>`` opening a line, or after the line's columns (``... ActivityManager: ``,
#: ``am_anr`` aside): what precedes it ends in ``: `` or ``| `` (no prose word before it)
_ANR = re.compile(r"(?:^|[:|]\s)\s*ANR in (?P<app>[\w.:]{1,300})")
_REASON = "Reason: "
#: the report's field under its ANR line when the Reason is missing (a cut report)
_PID = "PID: "
#: lines under the ANR line read for its Reason (PID, Parent, Reason come first)
_BELOW = 8


def parse_anr(text: str, repo: str = "") -> Extraction | None:
    """An ANR report: error type ``ANR``, the Reason for message (``ANR in <process>`` for a
    report cut before its Reason; None without the report's fields under the line: a line
    that only names an ANR is no report)."""
    if "ANR in " not in text:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        found = _ANR.search(line) if "ANR in " in line else None
        if found is None or not _opens(line, found.start()):
            continue
        fields = False
        for below in lines[index + 1:index + 1 + _BELOW]:
            at = below.find(_REASON)
            if at >= 0 and below[at + len(_REASON):].strip():
                return Extraction("log", "ANR", below[at + len(_REASON):].strip(),
                                  tool="android")
            fields = fields or _PID in below
        if fields:  # a report without its Reason line: its process is all it says
            return Extraction("log", "ANR", f"ANR in {found.group('app')}", tool="android")
    return None


def _opens(line: str, at: int) -> bool:
    """True when the ``ANR in`` matched at ``at`` opens its record: the line's start, or the
    first ``: ``/``| `` of the line (the end of its columns; a message's own colon comes
    later)."""
    if at == 0:
        return True
    first = min((i for i in (line.find(": "), line.find("| ")) if i >= 0), default=-1)
    return first == at
