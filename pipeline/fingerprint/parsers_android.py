"""Android's own failure reports that are no exception: an ANR (Application Not
Responding) as ActivityManager logs it.

``ANR in com.acme.shop (com.acme.shop/.MainActivity)`` then ``PID: ...``, ``Reason: ...``,
``Load: ...`` and the CPU usage table: the Reason says what the app did not answer (input
dispatching, a broadcast, a service), the rest is the moment's figures. Keyed on the Reason,
never on the CPU table's last line (which heads the text otherwise, and is every ANR's).
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction

#: ``ANR in <process>``, after logcat's columns or at a line's start
_ANR = re.compile(r"(?:^|\s)ANR in (?P<app>[\w.:]{1,300})")
_REASON = "Reason: "
#: lines under the ANR line read for its Reason (PID, Parent, Reason come first)
_BELOW = 8


def parse_anr(text: str, repo: str = "") -> Extraction | None:
    """An ANR report: error type ``ANR``, the Reason for message (``ANR in <process>`` when
    none follows)."""
    if "ANR in " not in text:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        found = _ANR.search(line) if "ANR in " in line else None
        if found is None:
            continue
        for below in lines[index + 1:index + 1 + _BELOW]:
            at = below.find(_REASON)
            if at >= 0 and below[at + len(_REASON):].strip():
                return Extraction("log", "ANR", below[at + len(_REASON):].strip(),
                                  tool="android")
        return Extraction("log", "ANR", f"ANR in {found.group('app')}", tool="android")
    return None
