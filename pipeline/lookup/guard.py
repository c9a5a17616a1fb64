"""Recognise genuine logic bugs, which must never receive a SAFE or MODERATE fix.

An assertion failure or a KeyError raised by application code says the code is wrong, not the
environment; no mechanical fix applies. The lookup refuses any SAFE/MODERATE match (in every
tier) for a text whose exceptions include one of these, and queues it for review instead.
"""

from __future__ import annotations

import re

#: exception types that point at the program's own logic (Python and JavaScript)
LOGIC_EXCEPTIONS = (
    "AssertionError",
    "KeyError",
    "IndexError",
    "LookupError",
    "TypeError",
    "ValueError",
    "AttributeError",
    "ZeroDivisionError",
    "ArithmeticError",
    "NameError",
    "UnboundLocalError",
    "RecursionError",
    "NotImplementedError",
    "ReferenceError",
    "RangeError",
    "StopIteration",
)

_NAMES = "|".join(LOGIC_EXCEPTIONS)
# where an exception is reported: a traceback's last line, pytest's "E   " lines and its
# short summary ("FAILED test_x.py::test_y - KeyError: 'a'"), Node's "TypeError: ..." and
# "AssertionError [ERR_ASSERTION]"; a bare pytest "assert x == y" failure line too.
_LOGIC = re.compile(
    rf"""^(?:E\s+)?(?:[\w.]+\.)?(?P<name>{_NAMES})(?:\s\[\w+\])?(?::|$)
       |^FAILED\s\S+\s-\s(?:[\w.]+\.)?(?P<summary>{_NAMES}|assert\b)
       |^E\s+assert\s
       |^>?\s*assert\s.*\n(?:E\s+)?AssertionError""",
    re.MULTILINE | re.VERBOSE,
)


#: messages that carry a logic exception's name but report the environment
_ENVIRONMENTAL = re.compile(r"bad marshal data|fetch failed")


def logic_bug(text: str) -> str | None:
    """The logic exception named in ``text`` (e.g. ``"KeyError"``), or None."""
    found = next((m for m in _LOGIC.finditer(text) if not _ENVIRONMENTAL.search(
        text, m.start(), text.find("\n", m.start()) % (len(text) + 1))), None)
    if found is None:
        return None
    name = found.group("name") or found.group("summary") or "AssertionError"
    return "AssertionError" if name == "assert" else name
